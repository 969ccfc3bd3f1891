"""Alembic environment for the warehouse.

At runtime `accrue.db.upgrade` hands over an open connection; developers
running the `alembic` CLI get the database from ACCRUE_DATABASE_URL (through
accrue.config), so no URL, and hence no password, lives in alembic.ini.
"""

from __future__ import annotations

import logging
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from sqlalchemy.engine import Connection

from accrue import schema
from accrue.db import make_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

logger = logging.getLogger("alembic.env")


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Leave tables of other applications sharing the database (e.g. Dagster) alone."""
    if type_ == "table" and name is not None:
        return schema.is_accrue_table(name)
    return True


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | Literal[False]:
    """Render our column types as plain SQLAlchemy types, so revisions never import live code."""
    if type_ == "type" and isinstance(obj, schema.UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=schema.metadata,
        include_name=include_name,
        render_item=render_item,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs need batch mode
    )


def run_migrations_offline() -> None:
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = config.attributes.get("engine") or make_engine()
    with engine.begin() as connection:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
