"""A local Close organization speaking REST API v1, for tests, chaos runs and the demo."""
