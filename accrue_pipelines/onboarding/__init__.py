"""The onboarding domain: milestones told to a new tenant's admin."""
