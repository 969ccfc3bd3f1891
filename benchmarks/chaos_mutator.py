"""The chaos run's mutator: writes through the CRM's real client while syncs run.

Why through the harness's writer (`RunningCrmSandbox.writer()`): it changes records
with the CRM's own client (simple-salesforce, closeio_api, the NetSuite record
service) in the common model's words, so one mutator serves every registered CRM and
its writes look to the adapter exactly like a seller's. It creates accounts, contacts
and opportunities (with a stage the org already uses and an account that exists),
renames them, moves amounts, close dates and stages, and deletes them. What a CRM's
writer cannot do (`NotImplementedError`, or a refusal of that field every time) is
skipped from then on.

A CRM whose benchmarks module `benchmarks.chaos_<key>` defines `make_mutator` gets that
richer mutator instead (Salesforce: sObject Collections, undeletes, custom fields,
recycle-bin purges); both share `MutatorBase` (the thread, the counters, the pacing).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import requests

from benchmarks.chaos_worker import Connection, make_connector
from connectors.base import Upsert
from connectors.sandbox_kit.harness import CrmWriter, RunningCrmSandbox

OBJECTS = ("account", "contact", "opportunity")
GIVE_UP_AFTER = 5  # refusals of one kind of write, with none done, before it is skipped
REBUILD_AFTER = 8  # failures in a row before the writer (its client, its session) is rebuilt
CLIENT_SLEEP_CAP = 1.0  # the longest a CRM client's retry sleep lasts in the mutator's thread

_real_sleep = time.sleep
_governed: dict[int, threading.Event] = {}  # mutator thread id -> its stop event


def _governed_sleep(seconds: float) -> None:
    """`time.sleep`, except in a mutator's thread: at most CLIENT_SLEEP_CAP, and over at
    once when the mutator is told to stop.

    Why: a CRM's real client honours the server's advice — closeio_api sleeps a quota
    429's `reset` (an hour), tenacity backs off up to 30 s — and a trial cannot wait that
    long for its mutator, nor compare while a write may still land. Clients look
    `time.sleep` up when they call it, so this reaches them without touching them; every
    other thread (the sandboxes' latency faults) sleeps as asked.
    """
    stop = _governed.get(threading.get_ident())
    if stop is None:
        _real_sleep(seconds)
    else:
        stop.wait(min(seconds, CLIENT_SLEEP_CAP))


class MutatorBase(threading.Thread):
    """A thread running weighted random writes until stopped, counting what happened.

    The counters are bookkeeping for the report only: the comparison trusts the org.
    `done` counts writes the CRM acknowledged, `uncertain` those cut off by a dropped
    connection or a timeout (they may have run; never repeated blindly).
    """

    def __init__(self, rng: random.Random) -> None:
        super().__init__(name="chaos-mutator", daemon=True)
        self.rng = rng
        self.stop_event = threading.Event()
        self.done: Counter[str] = Counter()
        self.uncertain: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.gave_up: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.operations: list[tuple[float, Callable[[], None]]] = []

    @property
    def mutations(self) -> int:
        return sum(self.done.values())

    def stop(self) -> None:
        self.stop_event.set()

    def connect(self) -> None:
        """Log in (in the thread, under faults); raising makes the loop try again."""

    def run(self) -> None:
        time.sleep = _governed_sleep  # type: ignore[assignment]  # idempotent; see above
        _governed[threading.get_ident()] = self.stop_event
        try:
            self._mutate()
        finally:
            _governed.pop(threading.get_ident(), None)

    def _mutate(self) -> None:
        connected = False
        while not self.stop_event.is_set() and not connected:
            try:
                self.connect()
                connected = True
            except Exception as exc:  # a faulted login: try again, the trial goes on
                self.errors[f"login:{type(exc).__name__}"] += 1
                self.stop_event.wait(0.1)
        while not self.stop_event.is_set():
            live = [(w, op) for w, op in self.operations if w > 0]
            if not live:
                return
            operation = self.rng.choices([op for _, op in live], [w for w, _ in live])[0]
            try:
                operation()
            except Exception as exc:  # bookkeeping only; the org is the truth
                self.errors[f"{operation.__name__}:{type(exc).__name__}"] += 1
            self.stop_event.wait(self.rng.uniform(0.0, 0.03))

    def text(self, prefix: str) -> str:
        return f"{prefix} {self.rng.randint(0, 10**6)}"


class WriterMutator(MutatorBase):
    """The CRM-neutral mutator, through the harness's `CrmWriter`."""

    def __init__(self, org: RunningCrmSandbox, connection: Connection,
                 rng: random.Random) -> None:
        super().__init__(rng)
        self.org = org
        self.pools: dict[str, list[str]] = {name: [] for name in OBJECTS}
        self.stages: list[str] = []
        self.skipped: set[str] = set()
        self.writer: CrmWriter | None = None
        self._failures = 0
        self._load_pools(connection)
        self.operations = [
            (4, self.create_account), (6, self.create_contact), (8, self.create_opportunity),
            (3, self.rename_account), (4, self.retitle_contact),
            (4, self.rename_opportunity), (4, self.move_amount), (4, self.move_close_date),
            (5, self.move_stage), (8, self.delete_record),
        ]

    def _load_pools(self, connection: Connection) -> None:
        """Live ids and the stages in use, read whole with faults off before the trial."""
        with make_connector(connection) as connector:
            offered = {info.name for info in connector.objects()}
            for name in OBJECTS:
                if name not in offered:
                    continue
                for change in connector.read(name, None):
                    if isinstance(change, Upsert) and not change.is_deleted:
                        self.pools[name].append(change.source_id)
                        stage = change.fields.get("stage") if name == "opportunity" else None
                        if stage and stage not in self.stages:
                            self.stages.append(str(stage))

    def connect(self) -> None:
        self.writer = self.org.writer()

    # -- plumbing --------------------------------------------------------------

    def _write(self, kind: str, call: Callable[[CrmWriter], Any]) -> Any:
        """One write; None if it was not (known to be) done."""
        if kind in self.skipped or self.writer is None:
            return None
        try:
            result = call(self.writer)
        except requests.RequestException:
            self.uncertain[kind] += 1  # it may have run: never repeated blindly
            return self._failed()
        except NotImplementedError:
            self.skipped.add(kind)  # this CRM's writer does not offer it
            return None
        except (ValueError, KeyError) as exc:
            self.rejected[kind] += 1  # this field, or a record deleted meanwhile
            if self.rejected[kind] >= GIVE_UP_AFTER and not self.done[kind]:
                self.skipped.add(kind)
                self.gave_up[f"{kind}:{type(exc).__name__}"] += 1
            return None
        except Exception as exc:  # the CRM client's own errors (a faulted call, a 404)
            self.errors[f"{kind}:{type(exc).__name__}"] += 1
            return self._failed()
        self._failures = 0
        self.done[kind] += 1
        return result if result is not None else True

    def _failed(self) -> None:
        """After many failures in a row, log in again: an expired session may never heal."""
        self._failures += 1
        if self._failures >= REBUILD_AFTER:
            self._failures = 0
            try:
                self.writer = self.org.writer()
            except Exception as exc:  # faulted again: the next failure retries
                self.errors[f"relogin:{type(exc).__name__}"] += 1
        return None

    def _pick(self, pool: str) -> str | None:
        ids = self.pools.get(pool) or []
        return self.rng.choice(ids) if ids else None

    def _day(self) -> date:
        return date.today() + timedelta(days=self.rng.randint(-400, 200))

    def _amount(self) -> float:
        return round(self.rng.uniform(1_000, 500_000), 2)

    # -- creates ---------------------------------------------------------------

    def create_account(self) -> None:
        fields = {"name": self.text("Chaos Account")}
        created = self._write("create_account", lambda w: w.create("account", fields))
        if isinstance(created, str):
            self.pools["account"].append(created)

    def create_contact(self) -> None:
        account = self._pick("account")
        if account is None:
            return
        fields = {"first_name": "Casey", "last_name": self.text("Chaos"),
                  "title": self.rng.choice(["Buyer", "CFO", "Engineer"]), "account_id": account}
        created = self._write("create_contact", lambda w: w.create("contact", fields))
        if isinstance(created, str):
            self.pools["contact"].append(created)

    def create_opportunity(self) -> None:
        account = self._pick("account")
        if account is None or not self.stages:
            return
        fields = {"name": self.text("Chaos Deal"), "account_id": account,
                  "amount": self._amount(), "stage": self.rng.choice(self.stages),
                  "close_date": self._day()}
        created = self._write("create_opportunity", lambda w: w.create("opportunity", fields))
        if isinstance(created, str):
            self.pools["opportunity"].append(created)

    # -- updates ---------------------------------------------------------------

    def _update(self, kind: str, object_name: str, fields: dict[str, Any]) -> None:
        source_id = self._pick(object_name)
        if source_id is not None:
            self._write(kind, lambda w: w.update(object_name, source_id, fields))

    def rename_account(self) -> None:
        self._update("rename_account", "account", {"name": self.text("Renamed Account")})

    def retitle_contact(self) -> None:
        self._update("retitle_contact", "contact", {"title": self.text("Head of")})

    def rename_opportunity(self) -> None:
        self._update("rename_opportunity", "opportunity", {"name": self.text("Renamed Deal")})

    def move_amount(self) -> None:
        self._update("move_amount", "opportunity", {"amount": self._amount()})

    def move_close_date(self) -> None:
        self._update("move_close_date", "opportunity", {"close_date": self._day()})

    def move_stage(self) -> None:
        if self.stages:
            self._update("move_stage", "opportunity", {"stage": self.rng.choice(self.stages)})

    # -- deletes ---------------------------------------------------------------

    def delete_record(self) -> None:
        object_name = self.rng.choices(OBJECTS, [1, 4, 3])[0]
        source_id = self._pick(object_name)
        if source_id is None:
            return
        self._write(f"delete_{object_name}", lambda w: w.delete(object_name, source_id))
        # Done, refused or unknown: never picked again this trial (a record the CRM keeps
        # refusing to delete would stall the mutator in its client's retries every time).
        self.pools[object_name].remove(source_id)


def make_mutator(org: RunningCrmSandbox, connection: Connection, rng: random.Random,
                 memory: dict[str, Any], *, purge: bool) -> MutatorBase:
    """The generic mutator (`memory` and `purge` are for richer mutators that keep
    state across trials or can empty a recycle bin)."""
    return WriterMutator(org, connection, rng)
