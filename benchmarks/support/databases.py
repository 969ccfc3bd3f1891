"""Scratch databases: a SQLite file in the work directory or a uniquely named PostgreSQL
database, created for a run and dropped after it, and the work directory itself.

A benchmark must never touch a database someone uses, and must leave nothing behind,
even when it is interrupted: every scratch database is dropped in a `finally`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL

from accrue.db import create_database, drop_database, make_engine
from benchmarks.support.measure import log

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
BENCH_POSTGRES_ENV = "ACCRUE_BENCH_POSTGRES_URL"  # where the benchmarks make scratch databases
BACKENDS = ("sqlite", "postgresql")


def default_postgres_url(*env_names: str) -> str:
    """The first of the environment variables that is set, else the local test server."""
    for name in env_names:
        if os.environ.get(name):
            return os.environ[name]
    return DEFAULT_POSTGRES_URL


def shown(url: str | URL) -> str:
    """A database URL as a report may print it (no password)."""
    return sa.make_url(url).render_as_string(hide_password=True)


def sqlite_url(workdir: Path, name: str) -> str:
    return f"sqlite:///{workdir / name}"


def drop_sqlite(url: str) -> None:
    """Delete a SQLite database file with its WAL and shared-memory files."""
    path = Path(sa.make_url(url).database or "")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@dataclass
class ScratchPostgres:
    """Creates uniquely named databases on one server and drops every one it created."""

    url: URL
    prefix: str
    created: list[str] = field(default_factory=list)
    server_version: str = ""

    def version(self) -> str:
        """The server version; raises when the server does not answer."""
        engine = make_engine(self.url, poolclass=sa.pool.NullPool,
                             connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                return str(conn.execute(sa.text("SHOW server_version")).scalar_one())
        finally:
            engine.dispose()

    def create(self, suffix: str = "") -> str:
        url = create_database(self.url, self.prefix + suffix)
        self.created.append(sa.make_url(url).database or "")
        return url

    def drop(self, url: str) -> None:
        drop_database(url)
        name = sa.make_url(url).database or ""
        if name in self.created:
            self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            try:
                self.drop(self.url.set(database=name).render_as_string(hide_password=False))
            except Exception as exc:  # noqa: BLE001 - report it, keep cleaning up
                log(f"could not drop scratch database {name}: {exc}; drop it by hand")


def scratch_postgres(url: str, prefix: str) -> tuple[ScratchPostgres | None, str]:
    """The server to make scratch databases on, or None when it does not answer; and a
    line saying which (with the reason it is skipped)."""
    server = ScratchPostgres(sa.make_url(url), prefix)
    try:
        server.server_version = server.version()
    except Exception as exc:  # any failure to connect means "skip", with the reason
        text = str(exc).strip().splitlines()
        reason = text[0] if text else type(exc).__name__
        return None, f"PostgreSQL skipped: cannot connect to {shown(url)} ({reason})"
    return server, f"PostgreSQL {server.server_version} at {shown(url)}"


@dataclass
class Backend:
    """A database kind; `create` makes a fresh empty database for one round."""

    name: str
    create: Callable[[int], str]
    drop: Callable[[str], None]
    note: str = ""


def sqlite_backend(workdir: Path) -> Backend:
    def create(round_number: int) -> str:
        return sqlite_url(workdir, f"warehouse-{round_number}.db")

    return Backend("sqlite", create, drop_sqlite, note=f"file in {workdir}")


def postgres_backend(url: str, prefix: str = "accrue_bench",
                     ) -> tuple[Backend | None, ScratchPostgres | None, str]:
    """The PostgreSQL backend and its server, or None twice and the reason it is skipped."""
    server, message = scratch_postgres(url, prefix)
    if server is None:
        return None, None, message
    backend = Backend("postgresql", lambda n: server.create(f"_{n}"), server.drop,
                      note=f"{shown(url)}, server {server.server_version}")
    return backend, server, message


def backend_urls(backends: Sequence[str], postgres_url: str, workdir: Path, prefix: str,
                 ) -> tuple[dict[str, str], ScratchPostgres | None]:
    """One warehouse URL per backend asked for: a SQLite file in `workdir`, a scratch
    PostgreSQL database (the caller calls `drop_all`); an unreachable server is skipped,
    saying so."""
    urls: dict[str, str] = {}
    server: ScratchPostgres | None = None
    if "sqlite" in backends:
        urls["sqlite"] = sqlite_url(workdir, "warehouse.db")
    if "postgresql" in backends:
        server, message = scratch_postgres(postgres_url, prefix)
        if server is None:
            print(message, flush=True)
        else:
            urls["postgresql"] = server.create()
            print(f"PostgreSQL: scratch database {server.created[-1]} on {shown(postgres_url)}",
                  flush=True)
    return urls, server


def parse_backends(value: str) -> tuple[list[str], list[str]]:
    """The comma-separated backends asked for, and the unknown ones among them."""
    asked = [b.strip() for b in value.split(",") if b.strip()]
    return asked, sorted(set(asked) - set(BACKENDS))


@contextlib.contextmanager
def work_dir(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A temporary directory for the run's files, removed after it unless `keep`."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            log(f"work files kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def scratch_warehouses(backends: Sequence[str], postgres_url: str, prefix: str,
                       keep: bool = False) -> Iterator[tuple[Path, dict[str, str]]]:
    """A work directory and one empty warehouse URL per reachable backend asked for; the
    scratch PostgreSQL database is dropped and the directory removed (unless `keep`) after."""
    with work_dir(f"{prefix.replace('_', '-')}-", keep) as workdir:
        urls, server = backend_urls(backends, postgres_url, workdir, prefix)
        try:
            yield workdir, urls
        finally:
            if server is not None:
                server.drop_all()
