"""The onboarding concierge: where a new tenant's admin connects the CRM."""

from onboarding_app.app import create_app

__all__ = ["create_app"]
