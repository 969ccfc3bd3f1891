"""A local HubSpot portal speaking the CRM v3 API, for demos, tests, chaos and benchmarks."""
