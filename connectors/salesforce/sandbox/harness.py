"""The Salesforce sandbox behind the kit's harness API (`connectors.sandbox_kit.harness`).

The shared contract suite, `make chaos` and `accrue demo` start an org through this and
change records with simple-salesforce, logged in as the integration user, exactly as a
seller's admin would; values come in the common model's words and are translated with
the connector's own field map (`connectors.salesforce.mapping.OBJECT_MAP`), so the writer
and the adapter can never disagree about which field feeds which column.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ...sandbox_kit.harness import CrmWriter, RunningCrmSandbox, SandboxHarness
from ..activity import KEY_PREFIXES
from ..mapping import OBJECT_MAP, sources
from .config import DEFAULT_PASSWORD, DEFAULT_SECURITY_TOKEN, DEFAULT_USERNAME
from .running import RunningSandbox, running_sandbox, serve
from .sandbox import SalesforceSandbox
from .values import format_datetime

# Columns Salesforce computes itself: a writer never sends them.
_COMPUTED = frozenset({"source_created_at", "is_closed", "is_won"})
# What a new user needs besides its name (Salesforce refuses a user without them).
_USER_SETTINGS = {"TimeZoneSidKey": "GMT", "LocaleSidKey": "en_US",
                  "EmailEncodingKey": "UTF-8", "LanguageLocaleKey": "en_US"}
_TASK_SUBTYPES = {"call": "Call", "email": "Email", "task": "Task"}


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


class SalesforceWriter(CrmWriter):
    """Writes through simple-salesforce's REST calls, as the integration user."""

    def __init__(self, client: Any, sandbox: SalesforceSandbox | None = None) -> None:
        self.sf = client
        self.sandbox = sandbox
        self._writable: dict[tuple[str, bool], frozenset[str]] = {}

    def _fields(self, sobject: str, *, creating: bool) -> frozenset[str]:
        """The fields the org lets this user write (its describe), cached per sObject."""
        key = (sobject, creating)
        if key not in self._writable:
            described = getattr(self.sf, sobject).describe()["fields"]
            flag = "createable" if creating else "updateable"
            self._writable[key] = frozenset(f["name"] for f in described if f[flag])
        return self._writable[key]

    def _payload(self, object_name: str, fields: Mapping[str, Any], *,
                 creating: bool) -> tuple[str, dict[str, Any]]:
        if object_name == "activity":
            sobject, payload = _activity(fields)
        else:
            sobject, field_map = OBJECT_MAP[object_name]
            payload = {field_map[k]: _value(v) for k, v in fields.items()
                       if k in field_map and k not in _COMPUTED}
            if object_name == "user":
                payload.update(self._user(fields, creating=creating))
            elif object_name == "opportunity_line":
                self._line(fields, payload)
        writable = self._fields(sobject, creating=creating)
        return sobject, {k: v for k, v in payload.items() if k in writable}

    def _user(self, fields: Mapping[str, Any], *, creating: bool) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if "name" in fields:
            first, _, last = str(fields["name"]).rpartition(" ")
            extra.update(FirstName=first or None, LastName=last)
        if creating:
            admin = self.sf.query("SELECT ProfileId FROM User ORDER BY CreatedDate LIMIT 1")
            email = str(fields.get("email") or f"{extra.get('LastName', 'user').lower()}"
                        "@example.test")
            extra.update(Username=email, Email=email, ProfileId=admin["records"][0]["ProfileId"],
                         Alias=email.split("@")[0][:8], **_USER_SETTINGS)
        return extra

    def _line(self, fields: Mapping[str, Any], payload: dict[str, Any]) -> None:
        """Salesforce takes a unit price or a total, not both, and prices from an entry."""
        if payload.get("UnitPrice") is not None:
            payload.pop("TotalPrice", None)
        if payload.get("Discount") is None:
            payload.pop("Discount", None)
        if not payload.get("PricebookEntryId") and fields.get("product_id"):
            book = self.sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")
            entry = self.sf.query(
                f"SELECT Id FROM PricebookEntry WHERE Product2Id = '{fields['product_id']}' "
                f"AND Pricebook2Id = '{book['records'][0]['Id']}' LIMIT 1")["records"]
            if entry:
                payload["PricebookEntryId"] = entry[0]["Id"]

    def create(self, object_name: str, fields: Mapping[str, Any]) -> str:
        sobject, payload = self._payload(object_name, fields, creating=True)
        return str(getattr(self.sf, sobject).create(payload)["id"])

    def update(self, object_name: str, source_id: str, fields: Mapping[str, Any]) -> None:
        sobject, payload = self._payload(object_name, fields, creating=False)
        if object_name == "activity":
            sobject = _activity_sobject(source_id)
        getattr(self.sf, sobject).update(source_id, payload)

    def delete(self, object_name: str, source_id: str) -> None:
        sobject = (_activity_sobject(source_id) if object_name == "activity"
                   else OBJECT_MAP[object_name][0])
        getattr(self.sf, sobject).delete(source_id)

    def write_raw(self, object_name: str, source_id: str, payload: Mapping[str, Any]) -> None:
        """Store CRM-shaped values as they are, skipping validation, and move the record's
        SystemModstamp on so an incremental read picks the bad value up."""
        sandbox = self.sandbox
        if sandbox is None:
            raise NotImplementedError("write_raw needs the sandbox itself (harness writers)")
        if object_name == "activity":
            sobject = _activity_sobject(source_id)
        else:  # common column names → the Salesforce fields that feed them
            sobject, field_map = OBJECT_MAP[object_name]
            payload = {field_map.get(k, k): v for k, v in payload.items()}
        obj = sandbox.schema.require(sobject)
        with sandbox.store.write() as conn:
            stored = sandbox.store.get(conn, obj, source_id)
            if stored is None:
                raise KeyError(f"no {sobject} {source_id}")
            stamp = sandbox.write_timestamp()
            record = {**stored.data, **payload, "LastModifiedDate": stamp,
                      "SystemModstamp": stamp}
            sandbox.store.save(conn, obj, record, is_deleted=stored.is_deleted)


def _activity_sobject(source_id: str) -> str:
    return KEY_PREFIXES.get(source_id[:3], "Task")


def _activity(fields: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A meeting is an Event; calls, e-mails and to-dos are Tasks."""
    common = {"Subject": fields.get("subject"), "OwnerId": fields.get("owner_id"),
              "WhatId": fields.get("opportunity_id") or fields.get("account_id"),
              "WhoId": fields.get("contact_id") or fields.get("lead_id")}
    kind = fields.get("activity_type") or "task"
    if kind == "meeting":
        payload = {**common, "StartDateTime": _value(fields.get("activity_at")),
                   "DurationInMinutes": fields.get("duration_minutes") or 30}
        return "Event", {k: v for k, v in payload.items() if v is not None}
    payload = {**common, "TaskSubtype": _TASK_SUBTYPES.get(str(kind), "Task"),
               "Status": fields.get("status") or "Completed",
               "ActivityDate": _value(fields.get("due_date"))}
    return "Task", {k: v for k, v in payload.items() if v is not None}


# The shared suites' orgs (contract suite, chaos) hold tens to a few thousand records per
# object, far below the production threshold (10,000 rows) and page size (50,000): these
# make their initial loads and large gaps go through Bulk API 2.0 in pages of a few dozen
# (so a crash can fall between pages), while small incremental windows stay on REST; and
# they parse every Bulk page of 10+ records in the helper process (bulk_parse.py), so a
# crash or a fault can fall while it works.
SHARED_SUITE_BULK = {"bulk_threshold": 20, "bulk_page_records": 25, "bulk_parse_min_records": 10}


class RunningSalesforceSandbox(RunningCrmSandbox):
    """A running Salesforce org as the shared suite sees it."""

    def __init__(self, running: RunningSandbox) -> None:
        self.running = running
        self.url = running.url

    def connection(self) -> tuple[dict[str, str], dict[str, Any]]:
        secrets = {"username": self.running.username, "password": self.running.password,
                   "security_token": self.running.security_token}
        return secrets, {"auth": "password", "domain": "login", "sandbox_url": self.url,
                         **SHARED_SUITE_BULK}

    def bad_connection(self) -> tuple[dict[str, str], dict[str, Any]]:
        secrets, config = self.connection()
        return {**secrets, "password": f"not-{secrets['password']}"}, config

    def writer(self) -> SalesforceWriter:
        return SalesforceWriter(self.running.client(), self.running.sandbox)

    def set_faults(self, switches: Mapping[str, Any]) -> None:
        self.running.faults.clear()
        if switches:
            self.running.faults.update(switches)

    def fault_counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.running.faults.state()["injected"].items()}

    def live_count(self, object_name: str) -> int:
        counts = self.running.sandbox.counts()
        return sum(counts[sobject]["live"] for sobject in sources(object_name))

    def stop(self) -> None:
        self.running.stop()


class SalesforceHarness(SandboxHarness):
    """Starts seeded Salesforce orgs (the kit's deal model, Salesforce-shaped)."""

    def start(
        self,
        path: Path,
        *,
        opportunities: int,
        seed: int = 7,
        page_size: int | None = None,
        clock: Callable[[], datetime] | None = None,
        faults: Mapping[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        password: str | None = None,
        security_token: str | None = None,
    ) -> RunningSalesforceSandbox:
        """As the kit's; `password` / `security_token` set the integration user's (a new
        org's, or a stored org's from now on)."""
        options: dict[str, Any] = {"seed": seed, "n_opportunities": opportunities,
                                   "host": host, "port": port, "password": password,
                                   "security_token": security_token}
        if page_size is not None:
            options["page_size"] = page_size
        if clock is not None:
            options["clock"] = clock
        if faults:
            options["faults"] = dict(faults)
        return RunningSalesforceSandbox(running_sandbox(str(path), **options))

    def connection_at(self, url: str) -> tuple[dict[str, str], dict[str, Any]]:
        secrets = {"username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD,
                   "security_token": DEFAULT_SECURITY_TOKEN}
        return secrets, {"auth": "password", "domain": "login", "sandbox_url": url}

    def serve(self, path: Path, *, opportunities: int, seed: int, host: str, port: int,
              faults: Mapping[str, Any] | None = None, password: str | None = None,
              security_token: str | None = None) -> None:
        """The Salesforce sandbox's own foreground server (it prints the login to use)."""
        serve(port, str(path), seed=seed, n_opportunities=opportunities, host=host,
              faults=dict(faults) if faults else None, password=password,
              security_token=security_token)
