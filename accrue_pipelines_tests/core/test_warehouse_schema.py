"""The warehouse schema, its migrations and the engine settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine

from accrue import config, db, schema
from accrue.warehouse import Warehouse
from connectors.common_model import COMMON_OBJECTS

# --------------------------------------------------------------------------- schema and engine


def test_migrated_database_matches_the_schema(engine: Engine) -> None:
    """The hand-written migrations produce exactly what accrue.schema declares."""
    assert db.current_revision(engine) == db.head_revision()
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "include_name": lambda name, type_, _: (
                    type_ != "table" or schema.is_accrue_table(name)
                ),
            },
        )
        assert compare_metadata(context, schema.metadata) == []


def test_upgrade_is_idempotent(engine: Engine) -> None:
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()


def test_migrations_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    """Every revision can be undone, so a bad deploy can be rolled back."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'roundtrip.db'}")
    db.upgrade(engine)
    cfg = db.alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    db.upgrade(engine)
    assert set(sa.inspect(engine).get_table_names()) == set(schema.metadata.tables) | {
        "alembic_version"
    }
    engine.dispose()


def test_crm_tables_are_built_from_the_common_model() -> None:
    for object_name, columns in COMMON_OBJECTS.items():
        table = schema.object_table(object_name)
        assert table.name == f"crm_{object_name}"
        assert [c.name for c in table.c][2 : 2 + len(columns)] == [c.name for c in columns]
        assert [c.name for c in table.primary_key] == ["tenant_id", "source_id"]


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    """Concurrent pipeline writers and web readers need WAL, a busy timeout and FK checks;
    bulk loads, commits that do not fsync and a WAL checkpointed every ~40 MB."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'nested' / 'w.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == db.SQLITE_BUSY_TIMEOUT_MS
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        # A sync's page must not checkpoint the WAL at nearly every commit (issue 15).
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 10_000
    engine.dispose()


def test_settings_are_resolved_lazily(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """ACCRUE_HOME defaults to ./.accrue, is created on demand, and holds the default database."""
    monkeypatch.delenv(config.HOME_ENV)
    monkeypatch.chdir(tmp_path)
    assert not (tmp_path / ".accrue").exists()
    assert config.database_url() == f"sqlite:///{tmp_path / '.accrue' / 'warehouse.db'}"
    assert (tmp_path / ".accrue").is_dir()

    monkeypatch.setenv(config.DATABASE_URL_ENV, "postgresql://u@db/w")
    assert config.database_url() == "postgresql://u@db/w"
    assert db.make_engine().dialect.name == "postgresql"  # creating an engine does not connect


def test_statistics_are_refreshed_after_a_large_load_only(warehouse: Warehouse,
                                                           engine: Engine) -> None:
    """PostgreSQL: ANALYZE after a load that is a large share of the table (the planner's
    estimates drive the check and analytics joins); never blocks behind another ANALYZE."""
    if engine.dialect.name != "postgresql":
        assert warehouse.refresh_statistics("account", 10**9) is False  # SQLite: nothing to do
        return
    assert warehouse.refresh_statistics("account", 10**9) is True
    with engine.connect() as conn:
        estimated = conn.execute(sa.text(
            "SELECT reltuples FROM pg_class WHERE oid = 'crm_account'::regclass")).scalar_one()
    assert estimated >= 0  # analyzed: -1 means never
    if estimated > 0:
        assert warehouse.refresh_statistics("account", 0) is False  # a small share: skipped
    # Another session analyzing the table: we give up within the lock timeout, not wait.
    with engine.connect() as other:  # its transaction holds the lock until it closes
        other.execute(sa.text("LOCK TABLE crm_account IN SHARE UPDATE EXCLUSIVE MODE"))
        assert warehouse.refresh_statistics("account", 10**9) is False
