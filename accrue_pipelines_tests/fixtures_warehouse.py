"""Warehouse fixtures: an isolated environment and a migrated database per backend.

Databases are created and migrated once per test session (and per xdist
worker); tests stay independent by using their own tenant ids, which is also
what the warehouse guarantees in production (every query is tenant-scoped).

PostgreSQL runs only when ACCRUE_TEST_POSTGRES_URL points at a server whose
role may create databases, e.g. postgresql://postgres@127.0.0.1:5432/test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from accrue import config, crypto, db
from accrue.warehouse import Warehouse

POSTGRES_URL_ENV = "ACCRUE_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def accrue_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fresh key and home directory per test, and never the developer's own database."""
    home = tmp_path / "accrue_home"
    monkeypatch.setenv(config.SECRET_KEYS_ENV, crypto.generate_key())
    monkeypatch.setenv(config.HOME_ENV, str(home))
    monkeypatch.delenv(config.DATABASE_URL_ENV, raising=False)
    monkeypatch.delenv(config.ENVIRONMENT_ENV, raising=False)  # tests that need it set it
    return home


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[str]:
    """A uniquely named database on the test server, dropped at the end of the session."""
    server_url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if not server_url:
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_URL_ENV}, "
            "e.g. postgresql://postgres@127.0.0.1:5432/test"
        )
    url = db.create_database(server_url, f"accrue_test_{_worker()}")
    try:
        yield url
    finally:
        db.drop_database(url)


@pytest.fixture(scope="session", params=["sqlite", "postgresql"], ids=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of a migrated warehouse database, once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('warehouse') / 'warehouse.db'}"
    else:
        url = request.getfixturevalue("_postgres_database")
    engine = db.make_engine(url)
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def warehouse(engine: Engine) -> Warehouse:
    return Warehouse(engine)


@pytest.fixture
def make_tenant_id() -> Callable[[], str]:
    """A factory of tenant slugs no other test uses (tests share the session database)."""
    return lambda: f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def tenant_id(make_tenant_id: Callable[[], str]) -> str:
    return make_tenant_id()


@pytest.fixture
def private_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite warehouse of this test alone, for code that reads every tenant
    (schedulers, sensors): the shared session database holds other tests' tenants."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'private-warehouse.db'}")
    db.upgrade(engine)
    yield engine
    engine.dispose()
