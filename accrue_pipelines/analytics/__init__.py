"""The analytics domain: what is computed from a tenant's synced data."""
