"""Settings read from the environment.

Every value is resolved when asked for, never at import: tests, the CLI and
Dagster code locations set the environment after importing `accrue`, and a
stale module-level snapshot would silently point them at the wrong database.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "ACCRUE_HOME"
DATABASE_URL_ENV = "ACCRUE_DATABASE_URL"
SECRET_KEYS_ENV = "ACCRUE_SECRET_KEYS"
ENVIRONMENT_ENV = "ACCRUE_ENV"  # "production" in the image (deploy/Dockerfile)
PUSH_INBOX_RETENTION_ENV = "ACCRUE_PUSH_INBOX_RETENTION_DAYS"

DEFAULT_HOME = ".accrue"
SECRET_KEYS_FILENAME = "secret_keys"


def _env(name: str) -> str | None:
    """An environment value, with blank treated as unset (an empty export is not a value)."""
    value = os.environ.get(name, "").strip()
    return value or None


def accrue_home(*, create: bool = True) -> Path:
    """The local state directory (`ACCRUE_HOME`, default `./.accrue`).

    Created on demand so a fresh checkout works without setup; readers that
    only probe for a file pass `create=False` to avoid leaving empty folders.
    """
    raw = _env(HOME_ENV)
    home = Path(raw).expanduser() if raw else Path.cwd() / DEFAULT_HOME
    home = home.resolve()
    if create:
        home.mkdir(parents=True, exist_ok=True)
    return home


def database_url() -> str:
    """The warehouse database URL (`ACCRUE_DATABASE_URL`, default SQLite in ACCRUE_HOME)."""
    url = _env(DATABASE_URL_ENV)
    if url:
        return url
    return f"sqlite:///{accrue_home() / 'warehouse.db'}"


def is_production() -> bool:
    """`ACCRUE_ENV=production`: refuse what only a laptop may do (the demo key file,
    tenants pointed at a CRM sandbox). Unset means development: demo, tests, a local trial."""
    return (_env(ENVIRONMENT_ENV) or "development").lower() == "production"


def secret_keys() -> str | None:
    """The raw `ACCRUE_SECRET_KEYS` value; parsed only by `accrue.crypto`."""
    return _env(SECRET_KEYS_ENV)


def secret_keys_file() -> Path:
    """Where the local-demo key file lives; the path is returned whether or not it exists."""
    return accrue_home(create=False) / SECRET_KEYS_FILENAME


# Pushed batches are kept this many days after they were applied: to trace a push ("what
# exactly did they send?") and to answer a replayed `webhook-id` with its first receipt.
# A week outlasts any sender's retry schedule (Standard Webhooks senders give up within
# days), and a captured request replayed later is refused anyway: its signed timestamp is
# only accepted for 5 minutes. At least 1 day, so replay detection always covers retries.
DEFAULT_PUSH_INBOX_RETENTION_DAYS = 7


def push_inbox_retention_days() -> int:
    raw = _env(PUSH_INBOX_RETENTION_ENV)
    if raw is None:
        return DEFAULT_PUSH_INBOX_RETENTION_DAYS
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if days < 1:
        raise ValueError(f"{PUSH_INBOX_RETENTION_ENV}={raw!r}: give a whole number of days, "
                         "at least 1 (replayed pushes are recognised only while kept)")
    return days
