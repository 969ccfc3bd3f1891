"""The sync process the chaos run (`benchmarks.chaos`) kills with SIGKILL.

Why a separate process: a SIGKILL is the one failure nothing inside a process
can clean up after, so it is the honest test of F4 (a sync dying anywhere is
completed by the next attempt from its last committed checkpoint). The harness
kills the worker at random moments and starts a fresh one.

The worker loops `sync_object` over the objects its CRM offers, starting at a
random one so that every object gets killed mid-sync, and runs a share of its
syncs with `reconcile=True` (the nightly id reconciliation). Each object gets a
fresh connector built by the registry (`registry.create_connector`), as a pipeline
run would, so it is the production adapter of whichever CRM is under test, and
custom fields added meanwhile are selected. Connector errors are logged and the
loop goes on, as run retries do.

It journals every version it committed: the warehouse's `on_committed` observer
(`Journal`) appends one line per Upsert/Delete to the journal *after* the page's
commit, flushed and fsync'ed. A kill between the commit and the journal
write only makes the journal smaller, so "journal ⊆ change log" is a sound check.

Run alone (`python -m benchmarks.chaos_worker --crm … --connection FILE --objects …
--tenant … --journal …`) it syncs in a loop itself; with `--fork-server EVENTS` it
imports once and forks a fresh sync process per command, so restarts after a kill
take milliseconds instead of the 1.5–2.5 s the imports cost.

The connection (secrets and config, as the harness's `connection()` gives them) is
read from a JSON file the harness writes with mode 0600 — never from argv, never
printed; the warehouse URL comes from --database-url or ACCRUE_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from accrue.db import make_engine
from accrue.sync import sync_object
from accrue.warehouse import PageChange, Warehouse
from connectors import registry
from connectors.base import Connector, ConnectorError, Delete, Upsert

DATABASE_URL_ENV = "ACCRUE_DATABASE_URL"
# Retries stay those of production; only the backoff ceiling is lowered so a trial
# of a few seconds sees several syncs, not one long sleep.
MAX_BACKOFF_SECONDS = 1.0
DEFAULT_TIMEOUT_SECONDS = 60.0
FAILURE_PAUSE_SECONDS = 0.1  # after a failed sync, as a run retry would wait

JournalKey = tuple[str, str, str, bool]  # (object, source_id, source_modified_at ISO, deleted)


def stamp_key(value: datetime) -> str:
    """The one text form of a version stamp used by the journal and the harness."""
    return value.astimezone(UTC).isoformat()


def journal_entries(object_name: str, changes: Iterable[PageChange]) -> list[JournalKey]:
    """The versions a page carries, keyed as `crm_change_log` keys them."""
    entries: list[JournalKey] = []
    for change in changes:
        if isinstance(change, Upsert):
            entries.append(
                (object_name, change.source_id, stamp_key(change.modified_at),
                 bool(change.is_deleted))
            )
        elif isinstance(change, Delete):
            entries.append((object_name, change.source_id, stamp_key(change.deleted_at), True))
    return entries


class Journal:
    """Records, after each commit, the versions that commit held (`Warehouse`'s
    `on_committed` observer): one line per version, flushed and fsync'ed."""

    def __init__(self, file: IO[str]) -> None:
        self.file = file

    def __call__(self, tenant_id: str, object_name: str, changes: Sequence[PageChange]) -> None:
        entries = journal_entries(object_name, changes)
        if entries:
            self.file.write("".join(json.dumps(entry) + "\n" for entry in entries))
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


def read_journal(path: Path) -> set[JournalKey]:
    """Every complete journal line; a line cut short by a kill is ignored."""
    entries: set[JournalKey] = set()
    if not path.exists():
        return entries
    with path.open(encoding="utf-8") as journal:
        for line in journal:
            if not line.endswith("\n"):
                break  # the kill landed mid-write: that entry was never promised
            object_name, source_id, stamp, deleted = json.loads(line)
            entries.add((object_name, source_id, stamp, bool(deleted)))
    return entries


@dataclass(frozen=True)
class Connection:
    """What a tenant connected to the org stores: its CRM, secrets and config."""

    crm: str
    secrets: Mapping[str, str]
    config: Mapping[str, Any]

    def save(self, path: Path) -> None:
        """Written readable by this user only: the sandbox's secrets stay off argv and logs."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump({"crm": self.crm, "secrets": dict(self.secrets),
                       "config": dict(self.config)}, out)

    @classmethod
    def load(cls, path: Path) -> Connection:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(data["crm"], data["secrets"], data["config"])


def make_connector(connection: Connection, timeout: float | None = None) -> Connector:
    """The production adapter from the registry, with a short backoff ceiling and, in
    "timeout" trials, a request timeout below the sandbox's latency jitter."""
    config = {**connection.config, "max_backoff_seconds": MAX_BACKOFF_SECONDS,
              "timeout_seconds": timeout if timeout is not None else DEFAULT_TIMEOUT_SECONDS}
    return registry.create_connector(connection.crm, connection.secrets, config)


def _emit(out: IO[str], event: str, **fields: Any) -> None:
    out.write(json.dumps({"event": event, "t": time.time(), **fields}) + "\n")
    out.flush()


def _rotation(rng: random.Random, objects: Sequence[str]) -> Iterator[str]:
    start = rng.randrange(len(objects))
    while True:
        for offset in range(len(objects)):
            yield objects[(start + offset) % len(objects)]


@dataclass(frozen=True)
class WorkerConfig:
    database_url: str
    connection: Path
    objects: tuple[str, ...]
    tenant: str
    journal: Path
    seed: int = 0
    reconcile_rate: float = 0.0
    request_timeout: float | None = None
    passes: int | None = None


def sync_loop(config: WorkerConfig, out: IO[str]) -> None:
    """Sync every object round and round until killed (or `passes` object syncs are done)."""
    connection = Connection.load(config.connection)
    parent = os.getppid()
    rng = random.Random(config.seed)
    engine = make_engine(config.database_url)
    with open(config.journal, "a", encoding="utf-8") as journal:
        warehouse = Warehouse(engine, on_committed=Journal(journal))
        _emit(out, "started", pid=os.getpid())
        for done, object_name in enumerate(_rotation(rng, config.objects)):
            if config.passes is not None and done >= config.passes:
                break
            if os.getppid() != parent:
                break  # the fork server is gone (the harness died): nobody will kill us
            reconcile = rng.random() < config.reconcile_rate
            try:
                with make_connector(connection, config.request_timeout) as connector:
                    result = sync_object(
                        warehouse, connector, config.tenant, object_name, reconcile=reconcile
                    )
            except ConnectorError as exc:
                _emit(out, "sync", object=object_name, status="failed", kind=exc.kind,
                      error=type(exc).__name__)
                time.sleep(FAILURE_PAUSE_SECONDS)
                continue
            except Exception as exc:  # a run retry would go on too; logged
                logging.getLogger(__name__).exception("sync of %s failed", object_name)
                _emit(out, "sync", object=object_name, status="failed", kind="error",
                      error=type(exc).__name__)
                time.sleep(FAILURE_PAUSE_SECONDS)
                continue
            _emit(
                out, "sync", object=object_name,
                status="succeeded" if result.complete else "stopped",
                records=result.records_read, reconciled=result.reconciled,
                checkpoints=result.checkpoints,
            )
    engine.dispose()


def serve_forks(base: WorkerConfig, events: Path) -> int:
    """Fork server: import once, then fork a fresh sync process per `spawn` command.

    Why: importing SQLAlchemy, Alembic and a CRM's client takes 1.5–2.5 s, which
    would cap the kills per trial. A forked child is a separate process that opens
    its own database connections and journal after the fork, and is SIGKILLed like
    any other. Commands are JSON lines on stdin, answers JSON lines on stdout:
    `{"cmd": "spawn", "seed": N, "request_timeout": T|null}` → `{"pid": P}`;
    `{"cmd": "reap", "pid": P}` → `{"pid": P, "signal": S|null, "code": C|null}`.
    """
    replies = sys.stdout
    _reply(replies, {"ready": os.getpid()})
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "spawn":
            config = replace(base, seed=int(command["seed"]),
                             request_timeout=command.get("request_timeout"))
            pid = os.fork()
            if pid == 0:  # the child: never returns into the server loop
                _child(config, events)
            _reply(replies, {"pid": pid})
        elif command["cmd"] == "reap":
            _, status = os.waitpid(int(command["pid"]), 0)
            _reply(replies, {
                "pid": command["pid"],
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
            })
    return 0


def _preload(connection: Path) -> None:
    """Build (never use) one adapter so its client library is imported before forking."""
    with make_connector(Connection.load(connection)):
        pass


def _child(config: WorkerConfig, events: Path) -> None:
    code = 0
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)  # let go of the server's command pipes
        os.dup2(devnull, 1)
        with events.open("a", encoding="utf-8") as out:
            sync_loop(config, out)
    except BaseException:
        logging.getLogger(__name__).exception("worker %d died", os.getpid())
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)


def _reply(out: IO[str], message: Mapping[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos_worker",
        description="Sync a CRM's objects from its sandbox in a loop (the chaos run's "
        "victim). The connection is read from a JSON file, never from the command line.",
    )
    parser.add_argument("--database-url", default=os.environ.get(DATABASE_URL_ENV))
    parser.add_argument("--connection", type=Path, required=True,
                        help='JSON file {"crm": KEY, "secrets": {...}, "config": {...}}')
    parser.add_argument("--objects", required=True,
                        help="comma-separated common objects to sync")
    parser.add_argument("--tenant", required=True)
    parser.add_argument("--journal", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reconcile-rate", type=float, default=0.0,
                        help="share of syncs run with reconcile=True (the nightly id diff)")
    parser.add_argument("--request-timeout", type=float, default=None,
                        help="seconds before an HTTP call times out (default: the adapter's)")
    parser.add_argument("--passes", type=int, default=None,
                        help="stop after this many object syncs (default: run until killed)")
    parser.add_argument("--fork-server", type=Path, default=None, metavar="EVENTS",
                        help="serve spawn/reap commands on stdin; children append their "
                        "events to this file")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error(f"--database-url or {DATABASE_URL_ENV} is required")
    args.objects = tuple(o.strip() for o in args.objects.split(",") if o.strip())
    if not args.objects:
        parser.error("--objects names no object")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    args = parse_args(sys.argv[1:] if argv is None else argv)
    config = WorkerConfig(
        database_url=args.database_url, connection=args.connection, objects=args.objects,
        tenant=args.tenant, journal=args.journal, seed=args.seed,
        reconcile_rate=args.reconcile_rate, request_timeout=args.request_timeout,
        passes=args.passes,
    )
    if args.fork_server is not None:
        _preload(config.connection)
        return serve_forks(config, args.fork_server)
    sync_loop(config, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
