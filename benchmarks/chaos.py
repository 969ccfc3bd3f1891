"""`make chaos`: syncs under faults, concurrent writes and SIGKILL, then an exact comparison.

Why it exists: F2 (never a duplicate), F3 (changes to historical records
applied, earlier versions kept), F4 (a sync failing anywhere is completed by
the next attempt from its last committed checkpoint) and "deletes flagged,
never kept as live" are promises about what happens when things go wrong at
the same time. Unit tests cover each failure alone; this run mixes them at
random and checks the end result against the source, record by record.

One trial, per warehouse backend (SQLite, PostgreSQL):

1. a random fault mix is switched on in the sandbox (`POST /_sandbox/faults`):
   500/503s, 429s, the daily quota refused after N calls, sessions expiring
   after N calls, latency (sometimes past the worker's request timeout),
   connections cut mid-body, late commits (SystemModstamp 0.5–5 minutes in
   the past, inside the adapter's 10-minute lookback);
2. a mutator thread writes through the real simple-salesforce client: creates
   (accounts, contacts, leads, opportunities with line items), updates (closed
   historical opportunities too, and bulk sObject Collections updates whose
   records share one stamp across page boundaries), deletes, SOAP undeletes,
   custom fields added and filled, and now and then a recycle-bin purge;
3. meanwhile `benchmarks.chaos_worker` syncs every object in a loop and is
   killed with SIGKILL at random moments, then restarted;
4. the mutator stops, the worker is killed a last time, faults are cleared and
   one clean sync of every object runs in this process;
5. the warehouse is compared with a fresh `queryAll` of the sandbox: live ids,
   deleted flags, SystemModstamp, every selected field of every record (live
   and in the recycle bin), no duplicate key, every version the worker
   journaled after a commit present in `crm_change_log`, and every current
   row's version in the change log.

Each backend's warehouse lives across trials (the first trial is the initial
load, under chaos); the sandbox org is shared. A trial's seed fixes its fault
switches (including the sandbox's fault seed), its mutation plan and its kill
schedule; thread timing does not replay. `python -m benchmarks.chaos --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import requests
import sqlalchemy as sa
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from accrue.db import create_database, drop_database, make_engine, upgrade
from accrue.schema import crm_change_log, object_table
from accrue.sync import sync_object
from accrue.tenants import add_tenant, get_tenant
from benchmarks.chaos_activities import ActivityMutations
from benchmarks.chaos_worker import (
    DATABASE_URL_ENV,
    OBJECTS,
    PASSWORD_ENV,
    TOKEN_ENV,
    USERNAME_ENV,
    JournalingWarehouse,
    JournalKey,
    make_connector,
    read_journal,
    stamp_key,
    timed_session,
)
from connectors.base import ConnectorError
from connectors.salesforce import SalesforceConnector, parse_sf_datetime, sources
from connectors.salesforce.sandbox import RunningSandbox, running_sandbox
from connectors.salesforce.sandbox.schema import INDUSTRIES, LEAD_SOURCES, STAGES
from connectors.salesforce.transport import soap_undelete

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TRIALS = 50
DEFAULT_SEED = 1
DEFAULT_OPPORTUNITIES = 300
DEFAULT_TRIAL_SECONDS = 5.0
PAGE_SIZE = 50  # the org's query page: many pages, so many checkpoints to die between
TENANT = "chaos"
POSTGRES_ENV = "ACCRUE_CHAOS_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
API_DAILY_LIMIT = 10_000_000  # far away: the quota *fault* is what this run injects
RECONCILE_RATE = 0.2  # share of worker syncs run with the nightly id reconciliation
WORKER_READY_SECONDS = 30.0
CLEAN_SYNC_ATTEMPTS = 3
BATCH_HEADER = {"Sforce-Query-Options": "batchSize=2000"}
MISMATCH_LINES = 8  # mismatch details printed per trial (all of them with --verbose)
# Kinds in /_sandbox/faults "injected" that are failures or back-dated writes; latency is
# counted apart (it is every call once switched on).
FAILURE_KINDS = (
    "http_500", "http_503", "rate_limit", "quota_exceeded", "session_expiry",
    "dropped_connection", "late_commit",
)
OPEN_STAGES = [name for name, (_, closed, _, _) in STAGES.items() if not closed]
CLOSED_STAGES = [name for name, (_, closed, _, _) in STAGES.items() if closed]
CUSTOM_TYPES = ("string", "double", "int", "date", "picklist", "currency")
CUSTOM_PICKLIST = ["Red", "Amber", "Green"]


class ChaosError(RuntimeError):
    """A harness step failed (not a finding about the sync): the message says what."""


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ============================================================ fault plan


@dataclass
class FaultPlan:
    """One trial's fault switches and the worker settings that go with them."""

    switches: dict[str, Any]
    request_timeout: float | None  # set in "timeout" trials, below the latency jitter

    def describe(self) -> str:
        shown = {k: v for k, v in self.switches.items() if k != "seed" and v}
        if self.request_timeout is not None:
            shown["worker_timeout_s"] = self.request_timeout
        return json.dumps(shown, sort_keys=True)


def plan_faults(rng: random.Random, fault_seed: int) -> FaultPlan:
    """A random mix: always some 5xx, plus any of the counted and network faults."""
    switches: dict[str, Any] = {
        "seed": fault_seed,
        "error_rate": rng.choice([0.02, 0.03, 0.05]),
        "drop_connection_rate": rng.choice([0.0, 0.01, 0.02, 0.04]),
        "late_commit_rate": rng.choice([0.0, 0.1, 0.25, 0.5]),
        "late_commit_minutes": round(rng.uniform(0.5, 5.0), 1),
        "latency_ms": rng.randint(0, 10),
        "latency_jitter_ms": rng.randint(0, 30),
    }
    if rng.random() < 0.5:
        calls = rng.randint(1, 3)
        switches.update(rate_limit_after=rng.randint(3, 60), rate_limit_calls=calls,
                        rate_limit_repeat=rng.random() < 0.5)
    if rng.random() < 0.4:
        calls = rng.randint(1, 4)
        switches.update(quota_exceeded_after=rng.randint(10, 150), quota_exceeded_calls=calls,
                        quota_exceeded_repeat=rng.random() < 0.3)
    if rng.random() < 0.5:
        switches.update(session_expiry_after=rng.randint(5, 80), session_expiry_calls=1,
                        session_expiry_repeat=rng.random() < 0.5)
    timeout = None
    if rng.random() < 0.25:
        # Timeouts: about one call in eight takes longer than the worker waits (ReadTimeout).
        switches["latency_jitter_ms"] = 300
        timeout = 0.26
    return FaultPlan(switches, timeout)


# ============================================================ the sandbox side


class Admin:
    """The sandbox's admin endpoints (never faulted, never metered)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.http.trust_env = False

    def call(self, method: str, path: str, payload: Any = None) -> Any:
        response = self.http.request(method, f"{self.url}/_sandbox/{path}", json=payload,
                                     timeout=60)
        if response.status_code >= 300:
            raise ChaosError(f"{method} /_sandbox/{path}: {response.status_code} "
                             f"{response.text[:200]}")
        return response.json() if response.content else None


@dataclass
class OrgState:
    """What the mutator remembers across trials (the org itself is the truth)."""

    standard_pricebook: str
    entries: list[tuple[str, float]]  # active standard price book entries (id, unit price)
    deleted_roots: list[tuple[str, str]] = field(default_factory=list)  # (sObject, id)
    custom_fields: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    next_field: int = 1


def _client(url: str, secrets: Mapping[str, str], timeout: float = 30.0) -> Salesforce:
    """A password + token login with the real client, as a user's integration does."""
    return Salesforce(username=secrets["username"], password=secrets["password"],
                      security_token=secrets["security_token"],
                      session=timed_session(url, timeout))


def _ids(sf: Salesforce, soql: str) -> list[str]:
    return [r["Id"] for r in sf.query_all(soql, headers=BATCH_HEADER)["records"]]


def load_org_state(sf: Salesforce) -> OrgState:
    """The standard price book and its entries, so new deals can get line items."""
    book = _ids(sf, "SELECT Id FROM Pricebook2 WHERE IsStandard = true")[0]
    entries = [
        (r["Id"], float(r["UnitPrice"]))
        for r in sf.query_all(
            "SELECT Id, UnitPrice FROM PricebookEntry "
            f"WHERE Pricebook2Id = '{book}' AND IsActive = true", headers=BATCH_HEADER,
        )["records"]
    ]
    return OrgState(book, entries)


def load_pools(sf: Salesforce) -> dict[str, list[str]]:
    """Live ids the mutator picks from, read with faults off at the start of a trial."""
    return {
        "Account": _ids(sf, "SELECT Id FROM Account"),
        "Contact": _ids(sf, "SELECT Id FROM Contact"),
        "Lead": _ids(sf, "SELECT Id FROM Lead WHERE IsConverted = false"),
        "Opportunity:open": _ids(sf, "SELECT Id FROM Opportunity WHERE IsClosed = false"),
        "Opportunity:closed": _ids(sf, "SELECT Id FROM Opportunity WHERE IsClosed = true"),
        "OpportunityLineItem": _ids(sf, "SELECT Id FROM OpportunityLineItem"),
        "Product2": _ids(sf, "SELECT Id FROM Product2"),
        "PricebookEntry": _ids(sf, "SELECT Id FROM PricebookEntry"),
        "User": _ids(sf, "SELECT Id FROM User WHERE Title != 'Integration User'"),
        "Task": _ids(sf, "SELECT Id FROM Task"),
        "Event": _ids(sf, "SELECT Id FROM Event"),
    }


# ============================================================ the mutator


class Mutator(ActivityMutations, threading.Thread):
    """Writes a random mix through simple-salesforce while syncs run.

    It tolerates the injected faults on its own calls: a 5xx, 429 or quota
    refusal is answered before the write happens, so it is retried; a cut
    connection or a timeout leaves the write's fate unknown, so it is counted
    as uncertain and not repeated. The org, not this bookkeeping, is what the
    comparison trusts.
    """

    def __init__(
        self, url: str, secrets: Mapping[str, str], pools: dict[str, list[str]], org: OrgState,
        admin: Admin, rng: random.Random, *, allow_purge: bool,
    ) -> None:
        super().__init__(name="chaos-mutator", daemon=True)
        self.url = url
        self.secrets = secrets
        self.pools = pools
        self.org = org
        self.admin = admin
        self.rng = rng
        self.allow_purge = allow_purge
        self.stop_event = threading.Event()
        self.done: Counter[str] = Counter()
        self.uncertain: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.gave_up: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.sf: Salesforce | None = None
        self._operations: list[tuple[float, Callable[[], None]]] = [
            (5, self.create_account), (7, self.create_contact), (4, self.create_lead),
            (7, self.create_opportunity), (9, self.update_closed_opportunity),
            (7, self.update_open_opportunity), (7, self.update_line_item),
            (4, self.update_account), (5, self.update_contact), (3, self.update_lead),
            (1, self.update_product), (1, self.update_price_entry), (1, self.update_user),
            (2, self.bulk_update), (10, self.delete_record), (5, self.undelete_record),
            (1, self.add_custom_field), (0.3 if allow_purge else 0, self.purge),
            (5, self.log_activity), (3, self.update_activity),
        ]

    @property
    def mutations(self) -> int:
        return sum(self.done.values())

    def stop(self) -> None:
        self.stop_event.set()

    def run(self) -> None:
        while not self.stop_event.is_set() and self.sf is None:
            try:
                self.sf = _client(self.url, self.secrets)
            except Exception as exc:  # a faulted login: try again, the trial goes on
                self.errors[f"login:{type(exc).__name__}"] += 1
                time.sleep(0.1)
        weights = [w for w, _ in self._operations]
        while not self.stop_event.is_set():
            operation = self.rng.choices(self._operations, weights)[0][1]
            try:
                operation()
            except Exception as exc:  # bookkeeping only; the org is the truth
                self.errors[f"{operation.__name__}:{type(exc).__name__}"] += 1
            self.stop_event.wait(self.rng.uniform(0.0, 0.03))

    # -- plumbing --------------------------------------------------------------

    def _write(self, kind: str, call: Callable[[], Any]) -> Any:
        """One API write with the retries a careful integration makes; None if not done."""
        for attempt in range(4):
            try:
                result = call()
            except (SalesforceGeneralError, SalesforceRefusedRequest, SalesforceExpiredSession):
                time.sleep(0.05 * 2**attempt)  # refused before it ran: safe to repeat
                continue
            except (SalesforceMalformedRequest, SalesforceResourceNotFound):
                self.rejected[kind] += 1  # e.g. the record was deleted meanwhile
                return None
            except requests.RequestException:
                self.uncertain[kind] += 1  # it may have run: never repeated blindly
                return None
            self.done[kind] += 1
            return result if result is not None else True
        self.gave_up[kind] += 1
        return None

    def _pick(self, pool: str) -> str | None:
        ids = self.pools.get(pool) or []
        return self.rng.choice(ids) if ids else None

    def _forget(self, record_id: str) -> None:
        for ids in self.pools.values():
            with contextlib.suppress(ValueError):
                ids.remove(record_id)

    def _sobject(self, name: str) -> Any:
        assert self.sf is not None
        return getattr(self.sf, name)

    def _text(self, prefix: str) -> str:
        return f"{prefix} {self.rng.randint(0, 10**6)}"

    def _custom_values(self, sobject: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Fill one or two of the object's custom fields now and then."""
        fields = self.org.custom_fields.get(sobject) or []
        if fields and self.rng.random() < 0.6:
            for name, type_ in self.rng.sample(fields, k=min(len(fields), self.rng.randint(1, 2))):
                payload[name] = self._custom_value(type_)
        return payload

    def _custom_value(self, type_: str) -> Any:
        rng = self.rng
        if rng.random() < 0.1:
            return None
        if type_ == "string":
            return self._text("chaos")
        if type_ in ("double", "currency"):
            return round(rng.uniform(0, 100_000), 2)
        if type_ == "int":
            return rng.randint(-1000, 100_000)
        if type_ == "date":
            return (date(2023, 1, 1) + timedelta(days=rng.randint(0, 900))).isoformat()
        return rng.choice(CUSTOM_PICKLIST)

    # -- creates ---------------------------------------------------------------

    def create_account(self) -> None:
        payload = self._custom_values("Account", {
            "Name": self._text("Chaos Account"), "Industry": self.rng.choice(INDUSTRIES),
            "NumberOfEmployees": self.rng.randint(1, 20_000),
            "AnnualRevenue": round(self.rng.uniform(1e5, 1e9), 2),
        })
        created = self._write("create_account", lambda: self._sobject("Account").create(payload))
        if created:
            self.pools["Account"].append(created["id"])

    def create_contact(self) -> None:
        payload = self._custom_values("Contact", {
            "LastName": self._text("Chaos"), "FirstName": "Casey",
            "Title": self.rng.choice(["Buyer", "CFO", "Engineer", None]),
        })
        account = self._pick("Account")
        if account:
            payload["AccountId"] = account
        created = self._write("create_contact", lambda: self._sobject("Contact").create(payload))
        if created:
            self.pools["Contact"].append(created["id"])

    def create_lead(self) -> None:
        payload = {"LastName": self._text("Lead"), "Company": self._text("Chaos Co"),
                   "LeadSource": self.rng.choice(LEAD_SOURCES)}
        created = self._write("create_lead", lambda: self._sobject("Lead").create(payload))
        if created:
            self.pools["Lead"].append(created["id"])

    def create_opportunity(self) -> None:
        stage = self.rng.choice(OPEN_STAGES + CLOSED_STAGES)
        close = date.today() + timedelta(days=self.rng.randint(-400, 200))
        payload = self._custom_values("Opportunity", {
            "Name": self._text("Chaos Deal"), "StageName": stage,
            "CloseDate": close.isoformat(), "Pricebook2Id": self.org.standard_pricebook,
        })
        account = self._pick("Account")
        if account:
            payload["AccountId"] = account
        created = self._write("create_opportunity",
                              lambda: self._sobject("Opportunity").create(payload))
        if not created:
            return
        opportunity = created["id"]
        self.pools["Opportunity:closed" if stage in CLOSED_STAGES else "Opportunity:open"].append(
            opportunity)
        for _ in range(self.rng.randint(1, 3)):
            if not self.org.entries:
                break
            entry, price = self.rng.choice(self.org.entries)
            line = {
                "OpportunityId": opportunity, "PricebookEntryId": entry,
                "Quantity": self.rng.randint(1, 20),
                "UnitPrice": round(price * self.rng.uniform(0.7, 1.0), 2),
                "Discount": self.rng.choice([0, 0, 5, 10, 20]),
            }
            made = self._write("create_line",
                               lambda line=line: self._sobject("OpportunityLineItem").create(line))
            if made:
                self.pools["OpportunityLineItem"].append(made["id"])

    # -- updates ---------------------------------------------------------------

    def _update(self, kind: str, sobject: str, record_id: str | None,
                payload: dict[str, Any]) -> None:
        if record_id is None:
            return
        # A record deleted meanwhile is rejected; the next trial's pools leave it out.
        self._write(kind, lambda: self._sobject(sobject).update(record_id, payload))

    def update_closed_opportunity(self) -> None:
        """Historical deals change too (F3): stage flips, dates move, notes are added."""
        rng = self.rng
        payload: dict[str, Any] = {}
        if rng.random() < 0.5:
            payload["StageName"] = rng.choice(CLOSED_STAGES)
        if rng.random() < 0.5:
            payload["CloseDate"] = (date.today() - timedelta(days=rng.randint(1, 700))).isoformat()
        if rng.random() < 0.6 or not payload:
            payload["NextStep"] = self._text("Post-mortem")
        if rng.random() < 0.3:
            payload["Description"] = self._text("Restated")
        self._update("update_closed_opportunity", "Opportunity", self._pick("Opportunity:closed"),
                     self._custom_values("Opportunity", payload))

    def update_open_opportunity(self) -> None:
        rng = self.rng
        payload: dict[str, Any] = {"StageName": rng.choice(OPEN_STAGES)}
        if rng.random() < 0.4:
            payload["Amount"] = round(rng.uniform(1_000, 500_000), 2)
        if rng.random() < 0.4:
            payload["Probability"] = rng.randint(5, 95)
        self._update("update_open_opportunity", "Opportunity", self._pick("Opportunity:open"),
                     self._custom_values("Opportunity", payload))

    def update_line_item(self) -> None:
        """Changes a line, which rolls up into its (often closed) opportunity's Amount."""
        payload = {"Quantity": self.rng.randint(1, 30),
                   "Discount": self.rng.choice([0, 5, 10, 15, 25])}
        self._update("update_line_item", "OpportunityLineItem",
                     self._pick("OpportunityLineItem"), payload)

    def update_account(self) -> None:
        payload = self._custom_values("Account", {
            "NumberOfEmployees": self.rng.randint(1, 50_000),
            "Industry": self.rng.choice(INDUSTRIES),
        })
        self._update("update_account", "Account", self._pick("Account"), payload)

    def update_contact(self) -> None:
        payload = self._custom_values("Contact", {"Title": self._text("Head of")})
        self._update("update_contact", "Contact", self._pick("Contact"), payload)

    def update_lead(self) -> None:
        self._update("update_lead", "Lead", self._pick("Lead"),
                     {"Company": self._text("Renamed Co")})

    def update_product(self) -> None:
        payload = {"Unit_Cost__c": round(self.rng.uniform(10, 900), 2)}
        self._update("update_product", "Product2", self._pick("Product2"), payload)

    def update_price_entry(self) -> None:
        payload = {"UnitPrice": round(self.rng.uniform(50, 5000), 2)}
        self._update("update_price_entry", "PricebookEntry", self._pick("PricebookEntry"),
                     payload)

    def update_user(self) -> None:
        self._update("update_user", "User", self._pick("User"), {"Title": self._text("Rep")})

    def bulk_update(self) -> None:
        """One sObject Collections call: up to 120 records share a SystemModstamp, so a
        page boundary falls among equal stamps (the resume-at->= case)."""
        ids = self.pools["Opportunity:closed"] + self.pools["Opportunity:open"]
        if not ids:
            return
        chosen = self.rng.sample(ids, k=min(len(ids), self.rng.randint(10, 120)))
        note = self._text("Bulk review")
        records = [{"attributes": {"type": "Opportunity"}, "id": i, "NextStep": note}
                   for i in chosen]
        assert self.sf is not None
        sf = self.sf
        self._write("bulk_update", lambda: sf.restful(
            "composite/sobjects", method="PATCH", json={"allOrNone": False, "records": records}))

    # -- deletes ---------------------------------------------------------------

    def delete_record(self) -> None:
        pools = ["Contact", "Opportunity:closed", "Opportunity:open", "OpportunityLineItem",
                 "Lead", "Account", "Task", "Event"]
        pool = self.rng.choices(pools, [5, 3, 3, 4, 3, 1, 3, 2])[0]
        record_id = self._pick(pool)
        if record_id is None:
            return
        sobject = pool.split(":")[0]
        done = self._write(f"delete_{sobject.lower()}",
                           lambda: self._sobject(sobject).delete(record_id))
        if done:
            self._forget(record_id)
            self.org.deleted_roots.append((sobject, record_id))

    def undelete_record(self) -> None:
        if not self.org.deleted_roots:
            return
        index = self.rng.randrange(len(self.org.deleted_roots))
        sobject, record_id = self.org.deleted_roots.pop(index)
        assert self.sf is not None
        sf = self.sf
        results = self._write("undelete", lambda: soap_undelete(sf, [record_id]))
        if isinstance(results, list) and results and results[0].get("success"):
            self.pools.setdefault(sobject if sobject != "Opportunity" else "Opportunity:open",
                                  []).append(record_id)

    def add_custom_field(self) -> None:
        """A new custom field (schema drift mid-sync), filled by later writes."""
        if sum(len(v) for v in self.org.custom_fields.values()) >= 40:
            return
        sobject = self.rng.choice(["Opportunity", "Opportunity", "Account", "Contact"])
        type_ = self.rng.choice(CUSTOM_TYPES)
        name = f"Chaos_{self.org.next_field}__c"
        self.org.next_field += 1
        spec: dict[str, Any] = {"sobject": sobject, "name": name, "type": type_}
        if type_ == "picklist":
            spec["picklistValues"] = CUSTOM_PICKLIST
        self.admin.call("POST", "fields", spec)
        self.org.custom_fields.setdefault(sobject, []).append((name, type_))
        self.done["add_custom_field"] += 1

    def purge(self) -> None:
        """Empty the recycle bin: deletes then show up only through id reconciliation."""
        self.admin.call("POST", "purge", {})
        self.org.deleted_roots.clear()
        self.done["purge"] += 1


# ============================================================ the worker


@dataclass
class Target:
    """One warehouse under test and the files its worker writes."""

    backend: str
    url: str
    tenant: str
    workdir: Path

    @property
    def journal(self) -> Path:
        return self.workdir / f"journal-{self.backend}.jsonl"

    @property
    def events(self) -> Path:
        return self.workdir / f"worker-{self.backend}.events.jsonl"

    @property
    def log(self) -> Path:
        return self.workdir / f"worker-{self.backend}.log"


class TailReader:
    """New complete lines of a file another process appends to, from where the last read
    stopped (a line still being written waits for the next read)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def lines(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as tail:
            tail.seek(self.offset)
            chunk = tail.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        return complete.decode("utf-8", errors="replace").splitlines()


class EventReader(TailReader):
    """The worker's JSON-lines events."""

    def read(self) -> list[dict[str, Any]]:
        parsed = []
        for line in self.lines():
            with contextlib.suppress(ValueError):
                parsed.append(json.loads(line))
        return parsed


RETRY_LINE = re.compile(r"Salesforce call failed \(attempt \d+\): (.+?); retrying")


def retry_causes(reader: TailReader) -> Counter[str]:
    """What the adapter retried in the worker log since the last read (timeouts included)."""
    causes: Counter[str] = Counter()
    for line in reader.lines():
        match = RETRY_LINE.search(line)
        if match:
            causes[match.group(1)] += 1
    return causes


@dataclass
class KillStats:
    kills: int = 0
    starts: int = 0
    crashes: list[str] = field(default_factory=list)  # worker exits nobody caused
    syncs: Counter[str] = field(default_factory=Counter)


class ForkServer:
    """`benchmarks.chaos_worker --fork-server`: forks a fresh sync process on demand.

    It is started once per target and never killed; the processes it forks are.
    """

    def __init__(self, target: Target, sandbox_url: str, secrets: Mapping[str, str]) -> None:
        self.target = target
        env = dict(os.environ)
        env.update({
            DATABASE_URL_ENV: target.url,
            USERNAME_ENV: secrets["username"],
            PASSWORD_ENV: secrets["password"],
            TOKEN_ENV: secrets["security_token"],
        })
        command = [
            sys.executable, "-m", "benchmarks.chaos_worker",
            "--fork-server", str(target.events), "--sandbox-url", sandbox_url,
            "--tenant", target.tenant, "--journal", str(target.journal),
            "--reconcile-rate", str(RECONCILE_RATE),
        ]
        self._log = target.log.open("a", encoding="utf-8")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self._log, env=env, cwd=REPO_ROOT, text=True)
        self._answer()  # {"ready": pid}

    def _ask(self, message: Mapping[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        return self._answer()

    def _answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise ChaosError(f"the worker fork server died: {_tail(self.target.log)}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def spawn(self, seed: int, request_timeout: float | None) -> int:
        return int(self._ask({"cmd": "spawn", "seed": seed,
                              "request_timeout": request_timeout})["pid"])

    def reap(self, pid: int) -> tuple[int | None, int | None]:
        """Wait for a worker to be gone: (signal that ended it, exit code)."""
        answer = self._ask({"cmd": "reap", "pid": pid})
        return answer["signal"], answer["code"]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    return ""


def run_worker_with_kills(
    server: ForkServer, plan: FaultPlan, rng: random.Random, seconds: float,
    reader: EventReader,
) -> KillStats:
    """Run the worker for `seconds`, SIGKILLing it at random moments and restarting it.

    Most kills land 0.05–0.8 s after a worker starts (mid-sync), some after
    1–2.5 s (after whole syncs); the worker is killed once more when the time is
    up, wherever it is. A worker is always gone (reaped) before the next starts.
    """
    stats = KillStats()
    deadline = time.monotonic() + seconds
    while True:
        pid = server.spawn(rng.randrange(2**31), plan.request_timeout)
        stats.starts += 1
        gap = rng.uniform(0.05, 0.8) if rng.random() < 0.7 else rng.uniform(1.0, 2.5)
        remaining = deadline - time.monotonic()
        last = gap >= remaining
        time.sleep(max(0.0, min(gap, remaining)))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        ended_by, code = server.reap(pid)
        if ended_by == signal.SIGKILL:
            stats.kills += 1
        else:
            stats.crashes.append(f"worker {pid} ended by itself (signal {ended_by}, code "
                                 f"{code}): {_tail(server.target.log)}")
        _count_syncs(reader.read(), stats)
        if last:
            return stats


def _count_syncs(events: Sequence[Mapping[str, Any]], stats: KillStats) -> None:
    for event in events:
        if event.get("event") == "sync":
            stats.syncs[str(event.get("status"))] += 1


# ============================================================ clean sync and comparison


@dataclass
class Mismatch:
    kind: str
    object_name: str
    source_id: str | None
    detail: str

    def __str__(self) -> str:
        where = f"{self.object_name}/{self.source_id}" if self.source_id else self.object_name
        return f"{self.kind} {where}: {self.detail}"


@dataclass
class Comparison:
    rows: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    quarantined: int = 0

    def add(self, kind: str, object_name: str, source_id: str | None, detail: str) -> None:
        self.mismatches.append(Mismatch(kind, object_name, source_id, detail))


def clean_sync(
    warehouse: JournalingWarehouse, sandbox_url: str, secrets: Mapping[str, str], tenant: str,
    comparison: Comparison,
) -> None:
    """One fault-free sync of every object, in process, from the states the kills left."""
    for object_name in OBJECTS:
        error = ""
        for _ in range(CLEAN_SYNC_ATTEMPTS):
            try:
                with make_connector(sandbox_url, secrets) as connector:
                    result = sync_object(warehouse, connector, tenant, object_name)
            except (ConnectorError, sa.exc.SQLAlchemyError) as exc:
                error = f"{type(exc).__name__}: {exc}"
                continue
            if result.complete:
                error = ""
                break
            error = f"stopped: {result.stop_reason}"
        if error:
            comparison.add("clean_sync_failed", object_name, None, error)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values: 3 and 3.0 are the same number; a bool is not a number."""
    numbers = (int, float)
    if (isinstance(a, numbers) and isinstance(b, numbers)
            and not isinstance(a, bool) and not isinstance(b, bool)):
        return math.isclose(float(a), float(b), rel_tol=0.0, abs_tol=0.0)
    return bool(a == b)


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def sandbox_records(
    connector: SalesforceConnector, object_name: str
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The fields the adapter selects now, and every record queryAll returns (live and deleted),
    of each sObject the object is read from (activity: Task and Event)."""
    records: dict[str, dict[str, Any]] = {}
    for sobject in sources(object_name):
        result = connector.sf.query_all(
            f"SELECT {', '.join(connector.sobject_fields(sobject))} FROM {sobject}",
            include_deleted=True, headers=BATCH_HEADER)
        records.update({r["Id"]: {k: v for k, v in r.items() if k != "attributes"}
                        for r in result["records"]})
    return connector.selectable_fields(object_name), records


def compare(
    warehouse: JournalingWarehouse, sandbox_url: str, secrets: Mapping[str, str], tenant: str,
    journal: set[JournalKey], comparison: Comparison,
) -> None:
    """The warehouse against the sandbox, record by record and field by field."""
    engine = warehouse.engine
    log = crm_change_log
    with engine.connect() as conn:
        logged = {
            (row.object_name, row.source_id, stamp_key(row.source_modified_at),
             bool(row.is_deleted))
            for row in conn.execute(
                sa.select(log.c.object_name, log.c.source_id, log.c.source_modified_at,
                          log.c.is_deleted).where(log.c.tenant_id == tenant))
        }
    for entry in sorted(journal - logged):
        comparison.add("journal_not_in_change_log", entry[0], entry[1],
                       f"version {entry[2]} deleted={entry[3]} was committed, not in the log")
    with make_connector(sandbox_url, secrets) as connector:
        for object_name in OBJECTS:
            fields, source = sandbox_records(connector, object_name)
            _compare_object(warehouse, tenant, object_name, fields, source, logged, comparison)
    comparison.quarantined = warehouse.quarantine_count(tenant)


def _compare_object(
    warehouse: JournalingWarehouse, tenant: str, object_name: str, fields: list[str],
    source: Mapping[str, Mapping[str, Any]], logged: set[JournalKey], comparison: Comparison,
) -> None:
    table = object_table(object_name)
    with warehouse.engine.connect() as conn:
        rows = {
            row.source_id: row
            for row in conn.execute(
                sa.select(table.c.source_id, table.c.is_deleted, table.c.source_modified_at,
                          table.c.raw).where(table.c.tenant_id == tenant))
        }
    duplicates = warehouse.duplicate_keys(tenant, object_name)
    if duplicates:
        comparison.add("duplicate_key", object_name, None, f"{duplicates} duplicated source ids")
    live_source = {i for i, r in source.items() if not r.get("IsDeleted")}
    live_warehouse = warehouse.live_ids(tenant, object_name)
    if live_source != live_warehouse:
        comparison.add(
            "live_ids", object_name, None,
            f"{len(live_warehouse - live_source)} live only in the warehouse, "
            f"{len(live_source - live_warehouse)} live only in the sandbox",
        )
    for source_id, record in source.items():
        comparison.rows += 1
        row = rows.get(source_id)
        deleted = bool(record.get("IsDeleted"))
        state = "deleted" if deleted else "live"
        if row is None:
            comparison.add(f"missing_{state}", object_name, source_id,
                           "in the sandbox, not in the warehouse")
            continue
        if bool(row.is_deleted) != deleted:
            comparison.add("deleted_flag", object_name, source_id,
                           f"warehouse is_deleted={row.is_deleted}, sandbox IsDeleted={deleted}")
        stamp = parse_sf_datetime(record["SystemModstamp"])
        if row.source_modified_at != stamp:
            comparison.add(f"stamp_{state}", object_name, source_id,
                           f"warehouse {row.source_modified_at.isoformat()} vs sandbox "
                           f"{stamp.isoformat()}")
        version = (object_name, source_id, stamp_key(row.source_modified_at),
                   bool(row.is_deleted))
        if version not in logged:
            comparison.add("row_not_in_change_log", object_name, source_id,
                           f"current version {version[2]} deleted={version[3]} not logged")
        raw = row.raw
        if raw is None:
            differing = [f for f in fields if record.get(f) is not None]
            if differing:
                comparison.add(f"fields_{state}", object_name, source_id,
                               f"raw is NULL (an id-only tombstone); sandbox has "
                               f"{len(differing)} non-null fields, e.g. "
                               f"{differing[0]}={_short(record.get(differing[0]))}")
            continue
        differing = [f for f in fields if not _same(raw.get(f), record.get(f))]
        if differing:
            shown = ", ".join(
                f"{f}: warehouse {_short(raw.get(f))} vs sandbox {_short(record.get(f))}"
                for f in differing[:4]
            )
            more = f" (+{len(differing) - 4} more)" if len(differing) > 4 else ""
            comparison.add(f"fields_{state}", object_name, source_id, shown + more)
    for source_id, row in rows.items():
        if source_id in source:
            continue
        comparison.rows += 1  # purged or hard-deleted in the sandbox: must be flagged
        if not row.is_deleted:
            comparison.add("ghost_live", object_name, source_id,
                           "gone from the sandbox (purged) but live in the warehouse")


# ============================================================ trials


@dataclass
class TrialResult:
    trial: int
    seed: int
    backend: str
    mutations: int
    faults: int
    kills: int
    rows: int
    mismatches: list[Mismatch]
    seconds: float
    fault_kinds: dict[str, int] = field(default_factory=dict)
    mutation_kinds: dict[str, int] = field(default_factory=dict)
    uncertain_writes: int = 0
    syncs: dict[str, int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)  # what the worker's adapter retried
    worker_crashes: list[str] = field(default_factory=list)
    quarantined: int = 0
    plan: str = ""


@dataclass
class ChaosOptions:
    trials: int = DEFAULT_TRIALS
    seed: int = DEFAULT_SEED
    opportunities: int = DEFAULT_OPPORTUNITIES
    trial_seconds: float = DEFAULT_TRIAL_SECONDS
    purge: bool = True
    verbose: bool = False


@dataclass
class Session:
    """The shared sandbox, the org bookkeeping and per-target state across trials."""

    sandbox: RunningSandbox
    admin: Admin
    secrets: dict[str, str]
    org: OrgState
    readers: dict[str, EventReader]
    logs: dict[str, TailReader]
    warehouses: dict[str, JournalingWarehouse]
    servers: dict[str, ForkServer]


def trial_seed(base: int, trial: int) -> int:
    """Trial n of a run with --seed S uses S + n: `--seed <it> --trials 1` replays the plan."""
    return base + trial


def run_trial(session: Session, target: Target, trial: int, seed: int,
              options: ChaosOptions) -> TrialResult:
    began = time.monotonic()
    url = session.sandbox.url
    plan = plan_faults(random.Random(f"{seed}:faults"), seed)
    setup = _client(url, session.secrets)
    pools = load_pools(setup)
    session.admin.call("DELETE", "faults")
    session.admin.call("POST", "faults", plan.switches)
    mutator = Mutator(url, session.secrets, pools, session.org, session.admin,
                      random.Random(f"{seed}:mutations"), allow_purge=options.purge)
    mutator.start()
    try:
        kills = run_worker_with_kills(
            session.servers[target.backend], plan, random.Random(f"{seed}:kills"),
            options.trial_seconds, session.readers[target.backend],
        )
    finally:
        mutator.stop()
        mutator.join(timeout=120)
    state = session.admin.call("GET", "faults")
    session.admin.call("DELETE", "faults")
    injected = {k: int(v) for k, v in state["injected"].items() if v}
    comparison = Comparison()
    warehouse = session.warehouses[target.backend]
    clean_sync(warehouse, url, session.secrets, target.tenant, comparison)
    compare(warehouse, url, session.secrets, target.tenant, read_journal(target.journal),
            comparison)
    return TrialResult(
        trial=trial, seed=seed, backend=target.backend, mutations=mutator.mutations,
        faults=sum(injected.get(k, 0) for k in FAILURE_KINDS), kills=kills.kills,
        rows=comparison.rows, mismatches=comparison.mismatches,
        seconds=time.monotonic() - began, fault_kinds=injected,
        mutation_kinds=dict(mutator.done), uncertain_writes=sum(mutator.uncertain.values()),
        retries=dict(retry_causes(session.logs[target.backend])),
        syncs=dict(kills.syncs), worker_crashes=kills.crashes,
        quarantined=comparison.quarantined, plan=plan.describe(),
    )


def prepare_target(target: Target) -> JournalingWarehouse:
    """Migrate the warehouse and register the tenant (idempotent)."""
    engine = make_engine(target.url)
    upgrade(engine)
    if get_tenant(engine, target.tenant) is None:
        add_tenant(engine, target.tenant, "Chaos run", "salesforce")
    target.journal.touch()
    journal = target.journal.open("a", encoding="utf-8")
    return JournalingWarehouse(engine, journal)


def run_chaos(
    options: ChaosOptions, targets: Sequence[Target], workdir: Path,
    out: TextIO | None = None, *, on_trial: Callable[[TrialResult], None] | None = None,
) -> list[TrialResult]:
    """Run `options.trials` trials on every target against one sandbox org."""
    out = out or sys.stdout
    state_path = workdir / "sandbox.db"
    sandbox = running_sandbox(
        str(state_path), seed=options.seed, n_opportunities=options.opportunities,
        page_size=PAGE_SIZE, api_daily_limit=API_DAILY_LIMIT,
    )
    results: list[TrialResult] = []
    warehouses: dict[str, JournalingWarehouse] = {}
    servers: dict[str, ForkServer] = {}
    try:
        secrets = {"username": sandbox.username, "password": sandbox.password,
                   "security_token": sandbox.security_token}
        for target in targets:
            warehouse = prepare_target(target)
            warehouses[target.backend] = warehouse
            servers[target.backend] = ForkServer(target, sandbox.url, secrets)
        session = Session(
            sandbox=sandbox, admin=Admin(sandbox.url), secrets=secrets,
            org=load_org_state(_client(sandbox.url, secrets)),
            readers={t.backend: EventReader(t.events) for t in targets},
            logs={t.backend: TailReader(t.log) for t in targets},
            warehouses=warehouses, servers=servers,
        )
        for trial in range(options.trials):
            seed = trial_seed(options.seed, trial)
            for target in targets:
                result = run_trial(session, target, trial + 1, seed, options)
                results.append(result)
                if on_trial is not None:
                    on_trial(result)
                print_trial(result, options.verbose, out)
    finally:
        for server in servers.values():
            server.close()
        with contextlib.suppress(Exception):
            sandbox.faults.clear()
        sandbox.stop()
        for warehouse in warehouses.values():
            warehouse.journal.close()
            warehouse.engine.dispose()
    return results


# ============================================================ output


HEADER = (f"{'trial':>5}  {'seed':>10}  {'backend':<10}  {'mutations':>9}  {'faults':>6}  "
          f"{'kills':>5}  {'rows':>6}  {'mismatches':>10}  {'seconds':>7}")


def print_trial(result: TrialResult, verbose: bool, out: TextIO) -> None:
    print(f"{result.trial:>5}  {result.seed:>10}  {result.backend:<10}  {result.mutations:>9}  "
          f"{result.faults:>6}  {result.kills:>5}  {result.rows:>6}  "
          f"{len(result.mismatches):>10}  {result.seconds:>7.1f}", file=out, flush=True)
    if verbose:
        print(f"       faults {json.dumps(result.fault_kinds, sort_keys=True)}", file=out)
        print(f"       plan {result.plan}", file=out)
        print(f"       mutations {json.dumps(result.mutation_kinds, sort_keys=True)} "
              f"(+{result.uncertain_writes} uncertain)", file=out)
        print(f"       worker syncs {json.dumps(result.syncs, sort_keys=True)}", file=out)
        print(f"       worker retries {json.dumps(result.retries, sort_keys=True)}", file=out)
    if result.quarantined:
        print(f"       NOTE {result.quarantined} record(s) in open quarantine", file=out)
    for crash in result.worker_crashes:
        print(f"       WORKER CRASH {crash}", file=out)
    shown = result.mismatches if verbose else result.mismatches[:MISMATCH_LINES]
    for mismatch in shown:
        print(f"       MISMATCH {mismatch}", file=out)
    if len(shown) < len(result.mismatches):
        print(f"       ... {len(result.mismatches) - len(shown)} more (--verbose shows all)",
              file=out)
    out.flush()


def summary(results: Sequence[TrialResult]) -> str:
    """Totals per backend and overall, plus faults and mismatches by kind."""
    lines = [f"{'backend':<12}{'trials':>7}{'mutations':>11}{'faults':>8}{'kills':>7}"
             f"{'rows compared':>15}{'mismatches':>12}{'seconds':>9}"]
    groups: dict[str, list[TrialResult]] = {}
    for result in results:
        groups.setdefault(result.backend, []).append(result)
    groups_all = [*groups.items(), ("all", list(results))] if len(groups) > 1 else list(
        groups.items())
    for name, group in groups_all:
        lines.append(
            f"{name:<12}{len(group):>7}{sum(r.mutations for r in group):>11}"
            f"{sum(r.faults for r in group):>8}{sum(r.kills for r in group):>7}"
            f"{sum(r.rows for r in group):>15}{sum(len(r.mismatches) for r in group):>12}"
            f"{sum(r.seconds for r in group):>9.0f}"
        )
    faults: Counter[str] = Counter()
    mutations: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    syncs: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    for result in results:
        retries.update(result.retries)
        faults.update(result.fault_kinds)
        mutations.update(result.mutation_kinds)
        syncs.update(result.syncs)
        kinds.update(m.kind for m in result.mismatches)
    lines.append(f"faults by kind: {json.dumps(dict(sorted(faults.items())))}")
    lines.append(f"mutations by kind: {json.dumps(dict(sorted(mutations.items())))}")
    lines.append(f"worker syncs: {json.dumps(dict(sorted(syncs.items())))}")
    lines.append(f"worker retries by cause: {json.dumps(dict(sorted(retries.items())))}")
    crashes = sum(len(r.worker_crashes) for r in results)
    if crashes:
        lines.append(f"worker crashes (exits nobody caused): {crashes}")
    if kinds:
        lines.append(f"mismatches by kind: {json.dumps(dict(sorted(kinds.items())))}")
    return "\n".join(lines)


# ============================================================ backends


@dataclass
class PostgresDatabase:
    """A uniquely named scratch database on a server, dropped at the end."""

    server_url: str
    name: str = ""

    url: str = ""

    def create(self) -> str:
        self.url = create_database(self.server_url, "accrue_chaos")
        self.name = sa.make_url(self.url).database or ""
        return self.url

    def drop(self) -> None:
        if self.url:
            drop_database(self.url)


def postgres_reachable(url: str) -> str | None:
    """None when the server answers, else why not (for the skip message)."""
    engine = make_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # any failure to connect means "skip", with the reason
        text = str(exc).strip().splitlines()
        return text[0] if text else type(exc).__name__
    finally:
        engine.dispose()
    return None


@contextlib.contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="accrue-chaos-"))
    try:
        yield path
    finally:
        if keep:
            _log(f"work files kept in {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


# ============================================================ command line


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos",
        description="Random faults, concurrent writes and SIGKILLed syncs against the "
        "Salesforce sandbox; after each trial the warehouse must equal the sandbox exactly.",
    )
    parser.add_argument("--trials", type=int, default=DEFAULT_TRIALS,
                        help="trials per backend (default %(default)s)")
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql (default %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help="seed of the org; trial n uses seed+n-1 (default %(default)s)")
    parser.add_argument("--opportunities", type=int, default=DEFAULT_OPPORTUNITIES,
                        help="opportunities seeded in the org (default %(default)s)")
    parser.add_argument("--trial-seconds", type=float, default=DEFAULT_TRIAL_SECONDS,
                        help="how long mutations, syncs and kills run per trial "
                        "(default %(default)s)")
    parser.add_argument("--no-purge", action="store_true",
                        help="never empty the recycle bin (no purge-driven reconciliation)")
    parser.add_argument("--postgres-url",
                        default=os.environ.get(POSTGRES_ENV)
                        or os.environ.get("ACCRUE_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
                        help=f"server to create the scratch database on (default ${POSTGRES_ENV}"
                        f", $ACCRUE_TEST_POSTGRES_URL or {DEFAULT_POSTGRES_URL})")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (sandbox, SQLite file, journals, logs)")
    parser.add_argument("--verbose", action="store_true",
                        help="faults, mutations and syncs by kind, and every mismatch")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    if args.opportunities < 10:
        parser.error("--opportunities must be at least 10")
    if args.trial_seconds <= 0:
        parser.error("--trial-seconds must be positive")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(args.backends) - {"sqlite", "postgresql"})
    if unknown or not args.backends:
        parser.error(f"unknown backend(s) {unknown}: use sqlite and/or postgresql")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    options = ChaosOptions(trials=args.trials, seed=args.seed, opportunities=args.opportunities,
                           trial_seconds=args.trial_seconds, purge=not args.no_purge,
                           verbose=args.verbose)
    postgres: PostgresDatabase | None = None
    began = time.monotonic()
    with _workdir(args.keep) as workdir:
        targets: list[Target] = []
        if "sqlite" in args.backends:
            targets.append(Target("sqlite", f"sqlite:///{workdir / 'warehouse.db'}", TENANT,
                                  workdir))
        if "postgresql" in args.backends:
            shown = sa.make_url(args.postgres_url).render_as_string(hide_password=True)
            problem = postgres_reachable(args.postgres_url)
            if problem is not None:
                print(f"PostgreSQL skipped: cannot connect to {shown} ({problem})", flush=True)
            else:
                postgres = PostgresDatabase(args.postgres_url)
                targets.append(Target("postgresql", postgres.create(), TENANT, workdir))
                print(f"PostgreSQL: scratch database {postgres.name} on {shown}", flush=True)
        if not targets:
            print("no backend to run on", file=sys.stderr)
            return 2
        print(f"chaos: {options.trials} trial(s) x {len(targets)} backend(s), "
              f"{options.opportunities} opportunities, {options.trial_seconds:g} s per trial, "
              f"seed {options.seed}, started {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC",
              flush=True)
        print(HEADER, flush=True)
        try:
            results = run_chaos(options, targets, workdir)
        except KeyboardInterrupt:
            _log("interrupted; the sandbox and the scratch database are cleaned up")
            return 130
        except ChaosError as exc:
            _log(f"chaos run failed (a harness problem, not a finding): {exc}")
            return 2
        finally:
            if postgres is not None:
                try:
                    postgres.drop()
                except sa.exc.SQLAlchemyError as exc:
                    _log(f"could not drop {postgres.name}: {exc}; drop it by hand")
    print(file=sys.stdout)
    print(summary(results), flush=True)
    total = sum(len(r.mismatches) for r in results)
    print(f"{'FAILED' if total else 'OK'}: {total} mismatch(es) in {len(results)} trial runs, "
          f"{time.monotonic() - began:.0f} s", flush=True)
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
