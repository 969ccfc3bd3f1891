"""Alembic migrations of the warehouse schema (run with `accrue.db.upgrade`)."""
