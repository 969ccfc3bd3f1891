"""The Close sandbox for the shared contract tests, chaos runs and the demo.

`CloseHarness().start(path, opportunities=…)` serves an organization seeded from the
kit's deal model; its writer changes records through the official client
(`closeio_api.API`), in the common model's words, exactly as an integration would
(`list_amount` is the opportunity custom field "List Price").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from closeio_api import API  # type: ignore[import-untyped]

from connectors.close.mapping import ACTIVITY_KINDS, SOURCES
from connectors.close.sandbox.seed import LIST_PRICE_KEY, custom_key, json_number, seed_store
from connectors.close.sandbox.serve import DEFAULT_API_KEY, ServedOrg, serve
from connectors.close.sandbox.server import FaultConfig, SandboxSettings
from connectors.close.sandbox.store import CloseStore, close_time
from connectors.sandbox_kit.deal_model import build_world
from connectors.sandbox_kit.faults import split_counted
from connectors.sandbox_kit.harness import CrmWriter, SandboxHarness, ServedCrmSandbox

WRONG_API_KEY = "api_this_key_was_never_issued_000000000"
# Common account column -> the lead custom field holding it.
ACCOUNT_CUSTOM = {"industry": "Industry", "employee_count": "Employees",
                  "annual_revenue": "Annual Revenue", "account_type": "Account Type",
                  "owner_id": "Lead Owner"}
# Common column -> the Close field it is read from, for raw writes.
RAW_FIELDS: dict[str, dict[str, str]] = {
    "opportunity": {"amount": "value", "name": "note", "account_id": "lead_id",
                    "owner_id": "user_id", "probability": "confidence",
                    "close_date": "date_won", "stage": "status_label",
                    "list_amount": LIST_PRICE_KEY},
    "contact": {"account_id": "lead_id"},
    "account": {"website": "url"},
    "activity": {"account_id": "lead_id", "owner_id": "user_id"},
}
ACTIVITY_ENDPOINTS = {**{common: f"activity/{close_type.lower()}"
                         for close_type, common in ACTIVITY_KINDS.items()}, "task": "task"}


def _cents(amount: Any) -> int | None:
    if amount is None:
        return None
    exact = Decimal(str(amount)) * 100
    if exact != exact.to_integral_value():
        raise ValueError(f"{amount} is not a whole number of cents")
    return int(exact)


def _number(value: Any) -> Any:
    """A number for a number custom field: a Decimal as the JSON number saying the same
    (ValueError if none does); anything else as given (Close refuses what is no number)."""
    return json_number(value) if isinstance(value, Decimal) else value


def _day(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


class CloseWriter(CrmWriter):
    """Writes through `closeio_api.API`, translating common-model fields into Close's."""

    def __init__(self, sandbox: ServedOrg) -> None:
        self.sandbox = sandbox
        self.api = API(sandbox.api_url, api_key=sandbox.app.settings.api_key)
        self._list_price_key: str | None = None

    def _endpoint(self, object_name: str, fields: Mapping[str, Any]) -> str:
        if object_name == "activity":
            return ACTIVITY_ENDPOINTS[str(fields.get("activity_type", "task"))]
        if object_name not in SOURCES or object_name == "user":
            raise ValueError(f"Close has no writable {object_name}")
        return SOURCES[object_name][0]

    def _resource_of(self, object_name: str, source_id: str) -> str:
        """Where an existing record lives: an activity's id says activity or task."""
        if object_name == "activity":
            return "task" if source_id.startswith("task_") else "activity"
        return self._endpoint(object_name, {})

    def _body(self, object_name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        f = dict(fields)
        body: dict[str, Any] = {}
        if object_name == "account":
            for column, name in ACCOUNT_CUSTOM.items():
                if column in f:
                    body[custom_key(name)] = f.pop(column)
            if "name" in f:
                body["name"] = f.pop("name")
            if "website" in f:
                body["url"] = f.pop("website")
            if "billing_country" in f or "billing_state" in f:
                body["addresses"] = [{"label": "business", "country": f.pop("billing_country",
                                      None), "state": f.pop("billing_state", None)}]
        elif object_name == "contact":
            if "first_name" in f or "last_name" in f:
                body["name"] = " ".join(p for p in (f.pop("first_name", None),
                                                    f.pop("last_name", None)) if p)
            if "account_id" in f:
                body["lead_id"] = f.pop("account_id")
            if "email" in f:
                body["emails"] = [{"email": f.pop("email"), "type": "office"}]
            if "title" in f:
                body["title"] = f.pop("title")
        elif object_name == "opportunity":
            renames = {"name": "note", "account_id": "lead_id", "owner_id": "user_id",
                       "probability": "confidence"}
            body.update({renames[k]: f.pop(k) for k in list(f) if k in renames})
            if "amount" in f:
                body["value"] = _cents(f.pop("amount"))
            if "close_date" in f:
                body["date_won"] = _day(f.pop("close_date"))
            if "stage" in f:
                body["status_id"] = self._status_id(str(f.pop("stage")))
            if "list_amount" in f:
                body[self._list_price()] = _number(f.pop("list_amount"))
        elif object_name == "activity":
            renames = {"account_id": "lead_id", "owner_id": "user_id", "contact_id": "contact_id"}
            body.update({renames[k]: f.pop(k) for k in list(f) if k in renames})
            subject = f.pop("subject", None)
            kind = f.pop("activity_type", None)
            if kind == "task" or "due_date" in f or "is_closed" in f:
                body.pop("user_id", None)
                if "owner_id" in fields:
                    body["assigned_to"] = fields["owner_id"]
                if "due_date" in f:
                    body["date"] = _day(f.pop("due_date"))
                if "is_closed" in f:
                    body["is_complete"] = f.pop("is_closed")
            if subject is not None:
                body[{"email": "subject", "meeting": "title", "task": "text"}.get(
                    str(kind), "note")] = subject
            minutes = f.pop("duration_minutes", None)
            if minutes is not None:
                body["duration"] = round(float(minutes) * 60)
            at = f.pop("activity_at", None)
            if isinstance(at, datetime) and kind == "meeting":
                body["starts_at"] = close_time(at)
        return body

    def _list_price(self) -> str:
        """The key of the opportunity custom field "List Price", found by name as an
        integration would (`custom.cf_…`)."""
        if self._list_price_key is None:
            for field in self.api.get("custom_field/opportunity")["data"]:
                if str(field["name"]).casefold() == "list price":
                    self._list_price_key = f"custom.{field['id']}"
                    break
            else:
                raise ValueError("the organization has no opportunity custom field "
                                 "'List Price'")
        return self._list_price_key

    def _status_id(self, label: str) -> str:
        for status in self.api.get("status/opportunity")["data"]:
            if status["label"] == label:
                return str(status["id"])
        raise ValueError(f"the organization has no opportunity status {label!r}")

    def create(self, object_name: str, fields: Mapping[str, Any]) -> str:
        created = self.api.post(self._endpoint(object_name, fields),
                                self._body(object_name, fields))
        return str(created["id"])

    def update(self, object_name: str, source_id: str, fields: Mapping[str, Any]) -> None:
        resource = self._resource_of(object_name, source_id)
        self.api.put(f"{resource}/{source_id}", self._body(object_name, fields))

    def delete(self, object_name: str, source_id: str) -> None:
        self.api.delete(f"{self._resource_of(object_name, source_id)}/{source_id}")

    def write_raw(self, object_name: str, source_id: str, payload: Mapping[str, Any]) -> None:
        """Store values as they are, unchecked; a common column's name stands for the Close
        field that feeds it (`amount` is written to `value`), any other key is Close's."""
        kind = self._resource_of(object_name, source_id) if object_name != "user" else "user"
        names = RAW_FIELDS.get(object_name, {})
        self.sandbox.app.writes.raw(kind, source_id,
                                    {names.get(k, k): v for k, v in payload.items()})


class RunningCloseSandbox(ServedCrmSandbox[ServedOrg]):
    """Close's faults answer in its shape (`CloseApp._respond`): a 429 with its RateLimit
    header, a refused key for session expiry."""

    @property
    def store(self) -> CloseStore:
        return self.served.store

    def connection(self) -> tuple[dict[str, str], dict[str, Any]]:
        config: dict[str, Any] = {"sandbox_url": self.url}
        if self.page_size:
            config["page_size"] = self.page_size
        return {"api_key": self.served.app.settings.api_key}, config

    def bad_connection(self) -> tuple[dict[str, str], dict[str, Any]]:
        _, config = self.connection()
        return {"api_key": WRONG_API_KEY}, config

    def writer(self) -> CloseWriter:
        return CloseWriter(self.served)

    def live_count(self, object_name: str) -> int:
        """Live records of the kinds the adapter reads (notes and the like are not)."""
        if object_name == "activity":
            return self.store.count("task") + sum(
                self.store.count("activity", _type=t) for t in ACTIVITY_KINDS)
        resources = SOURCES.get(object_name)
        return self.store.count(resources[0]) if resources else 0


class CloseHarness(SandboxHarness):
    def connection_at(self, url: str) -> tuple[dict[str, str], dict[str, Any]]:
        return {"api_key": DEFAULT_API_KEY}, {"sandbox_url": url}

    def start(self, path: Path, *, opportunities: int, seed: int = 7,
              page_size: int | None = None, clock: Callable[[], datetime] | None = None,
              faults: Mapping[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0,
              max_skip: int = 250_000) -> RunningCloseSandbox:
        """`max_skip` (Close's ceiling on `_skip`) small makes tests reach it; `faults`
        are checked before anything is made (`FaultConfigError` for a bad one)."""
        if faults:
            split_counted(faults, FaultConfig)
        now = (clock or (lambda: datetime.now(UTC)))()
        anchor = now.replace(hour=0, minute=0, second=0, microsecond=0)
        settings = SandboxSettings(api_key=DEFAULT_API_KEY, max_skip=max_skip,
                                   max_limit=max(100, page_size or 0))

        def fill(store: CloseStore) -> None:
            seed_store(store, build_world(opportunities, seed, anchor=anchor))

        served = serve(path, settings=settings, clock=clock, faults=faults, seed=fill,
                       host=host, port=port)
        return RunningCloseSandbox(served, page_size)
