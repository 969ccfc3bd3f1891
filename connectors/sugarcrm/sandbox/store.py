"""The Sugar sandbox's state: one SQLite file of records, OAuth clients and tokens.

A record is a JSON document of its module, with `date_modified`, `date_entered` (UTC,
whole seconds, in one sortable spelling) and `deleted` copied into indexed columns so the
filter API's conditions and `order_by` run in SQL. Deleting is soft, as in Sugar: the row
stays with `deleted` = 1 and a new `date_modified`.

Tokens behave as Sugar's: a password login opens a session for (user, platform) and ends
any earlier one of that pair (its access and refresh tokens stop working); a refresh
answers a new pair in the same session and invalidates the refresh token used.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.sandbox_kit.fault_wsgi import LATE_BY
from connectors.sandbox_kit.state import SqliteState

SCHEMA = """
CREATE TABLE IF NOT EXISTS record (
    id TEXT PRIMARY KEY, module TEXT NOT NULL, date_modified TEXT NOT NULL,
    date_entered TEXT NOT NULL, deleted INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS record_modified ON record (module, date_modified, id);
CREATE TABLE IF NOT EXISTS oauth_client (client_id TEXT PRIMARY KEY, secret TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS platform (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS password (user_name TEXT PRIMARY KEY, user_id TEXT NOT NULL,
    password TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS token (
    token TEXT PRIMARY KEY, kind TEXT NOT NULL, session TEXT NOT NULL, user_id TEXT NOT NULL,
    platform TEXT NOT NULL, client_id TEXT NOT NULL, expires TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS token_session ON token (user_id, platform, session);
"""
COLUMNS = ("id", "date_modified", "date_entered", "deleted")


def stamp(value: datetime) -> str:
    """The stored spelling of an instant: UTC, whole seconds (Sugar keeps no finer)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def parse_time(text: str) -> datetime:
    """An ISO date-time with an offset (naive is UTC) as aware UTC; ValueError else."""
    value = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class TokenRefused(Exception):
    """A token Sugar would not accept: unknown, ended by a newer login, or expired."""


class SugarStore(SqliteState):
    """Records, OAuth clients, platforms, passwords and tokens of one Sugar instance."""

    def __init__(self, path: Path, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(path, SCHEMA, clock)

    def now(self) -> datetime:
        return self.clock().astimezone(UTC).replace(microsecond=0)

    # -- setup ------------------------------------------------------------------------

    def is_empty(self) -> bool:
        return int(self.query("SELECT COUNT(*) FROM record")[0][0]) == 0

    def add_client(self, client_id: str, secret: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO oauth_client VALUES (?, ?)", (client_id, secret))

    def add_platforms(self, names: Sequence[str]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR IGNORE INTO platform VALUES (?)", [(n,) for n in names])

    def set_password(self, user_name: str, user_id: str, password: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO password VALUES (?, ?, ?)",
                       (user_name, user_id, password))

    def load(self, module: str, documents: Sequence[Mapping[str, Any]]) -> None:
        """Seed documents as they are (their own stamps): the instance's past."""
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO record VALUES (?, ?, ?, ?, ?, ?)",
                           [(d["id"], module, d["date_modified"], d["date_entered"],
                             int(d.get("deleted") or 0), json.dumps(d)) for d in documents])

    # -- OAuth --------------------------------------------------------------------------

    def client_ok(self, client_id: str, secret: str) -> bool:
        rows = self.query("SELECT secret FROM oauth_client WHERE client_id = ?", (client_id,))
        return bool(rows) and secrets.compare_digest(rows[0][0], secret)

    def platform_ok(self, name: str) -> bool:
        return bool(self.query("SELECT 1 FROM platform WHERE name = ?", (name,)))

    def user_for(self, user_name: str, password: str) -> str | None:
        rows = self.query("SELECT user_id, password FROM password WHERE user_name = ?",
                          (user_name,))
        if not rows or not secrets.compare_digest(rows[0][1], password):
            return None
        user = self.get("Users", rows[0][0])
        return str(rows[0][0]) if user and user.get("status") == "Active" else None

    def open_session(self, user_id: str, platform: str, client_id: str,
                     lifetimes: tuple[int, int]) -> tuple[str, str]:
        """A login: a new session for (user, platform), ending the earlier one's tokens."""
        with self.transaction() as db:
            db.execute("DELETE FROM token WHERE user_id = ? AND platform = ?",
                       (user_id, platform))
            return self._issue(db, new_id(), user_id, platform, client_id, lifetimes)

    def refresh_session(self, refresh_token: str, client_id: str, platform: str,
                        lifetimes: tuple[int, int]) -> tuple[str, str]:
        """A new pair for the session of `refresh_token`, which stops working."""
        with self.transaction() as db:
            row = db.execute("SELECT session, user_id, platform, client_id, expires FROM token "
                             "WHERE token = ? AND kind = 'refresh'", (refresh_token,)).fetchone()
            if row is None or row[3] != client_id or row[2] != platform or (
                    row[4] <= stamp(self.now())):
                raise TokenRefused("Invalid refresh token")
            db.execute("DELETE FROM token WHERE token = ?", (refresh_token,))
            return self._issue(db, row[0], row[1], row[2], row[3], lifetimes)

    def _issue(self, db: sqlite3.Connection, session: str, user_id: str, platform: str,
               client_id: str, lifetimes: tuple[int, int]) -> tuple[str, str]:
        access, refresh = new_id(), new_id()
        now = self.now()
        for token, kind, seconds in ((access, "access", lifetimes[0]),
                                     (refresh, "refresh", lifetimes[1])):
            db.execute("INSERT INTO token VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (token, kind, session, user_id, platform, client_id,
                        stamp(now + timedelta(seconds=seconds))))
        return access, refresh

    def user_of_token(self, access_token: str) -> str:
        rows = self.query("SELECT user_id, expires FROM token WHERE token = ? AND "
                          "kind = 'access'", (access_token,))
        if not rows or rows[0][1] <= stamp(self.now()):
            raise TokenRefused("The access token provided is invalid.")
        return str(rows[0][0])

    # -- records ------------------------------------------------------------------------

    def get(self, module: str, record_id: str, *, deleted: bool = False
            ) -> dict[str, Any] | None:
        rows = self.query("SELECT body, deleted FROM record WHERE module = ? AND id = ?",
                          (module, record_id))
        if not rows or (rows[0][1] and not deleted):
            return None
        body: dict[str, Any] = json.loads(rows[0][0])
        return body

    def select(self, module: str, where: str, args: Sequence[Any], order: str, limit: int,
               offset: int) -> list[dict[str, Any]]:
        rows = self.query(f"SELECT body FROM record WHERE module = ? AND ({where}) "
                          f"ORDER BY {order} LIMIT ? OFFSET ?",
                          [module, *args, limit, offset])
        return [json.loads(r[0]) for r in rows]

    def count(self, module: str, where: str = "deleted = 0", args: Sequence[Any] = ()) -> int:
        return int(self.query(f"SELECT COUNT(*) FROM record WHERE module = ? AND ({where})",
                              [module, *args])[0][0])

    def write_stamp(self, previous: str | None = None) -> str:
        """A write's `date_modified`: now, or earlier under the late-commit fault, but never
        before the record's previous change (Sugar stamps when the write runs)."""
        written = stamp(self.now() - LATE_BY.get())
        return max(written, previous) if previous else written

    def insert(self, module: str, document: Mapping[str, Any]) -> dict[str, Any]:
        at = self.write_stamp()
        body = {**document, "id": document.get("id") or new_id(), "date_entered": at,
                "date_modified": at, "deleted": 0}
        with self.transaction() as db:
            db.execute("INSERT INTO record VALUES (?, ?, ?, ?, 0, ?)",
                       (body["id"], module, at, at, json.dumps(body)))
        return body

    def update(self, module: str, record_id: str, changes: Mapping[str, Any], *,
               delete: bool = False) -> dict[str, Any] | None:
        """Apply changes (a PUT changes only what it sends) and move `date_modified`;
        `delete` marks the record deleted. None if there is no live record."""
        with self.transaction() as db:
            row = db.execute("SELECT body FROM record WHERE module = ? AND id = ? AND "
                             "deleted = 0", (module, record_id)).fetchone()
            if row is None:
                return None
            before = json.loads(row[0])
            at = self.write_stamp(before["date_modified"])
            body = {**before, **changes, "id": record_id, "date_modified": at,
                    "date_entered": before["date_entered"], "deleted": 1 if delete else 0}
            db.execute("UPDATE record SET date_modified = ?, deleted = ?, body = ? WHERE id = ?",
                       (at, body["deleted"], json.dumps(body), record_id))
        return body
