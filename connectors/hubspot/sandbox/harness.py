"""The HubSpot sandbox for the shared contract tests, chaos runs and the demo.

`HubSpotHarness().start(path, opportunities=…)` serves a portal seeded from the kit's deal
model; its writer changes records through the official client (`hubspot.Client`), in the
common model's words, as an integration would. The connection a tenant stores is a
private app's token (`api_key` sign-in); OAuth is the sandbox's too (`OAUTH_CLIENT`).

`index_lag` (how long search trails writes) is 0 here by default: the shared suites write
and then read at once, as a sync does minutes later on HubSpot, when its index has caught
up. `accrue sandbox hubspot` (the demo) serves with `DEMO_INDEX_LAG`, and the HubSpot tests
set it to show the lookback covering it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from hubspot import Client  # type: ignore[import-untyped]
from hubspot.crm.objects import (  # type: ignore[import-untyped]
    AssociationSpec,
    PublicAssociationsForObject,
    PublicObjectId,
    SimplePublicObjectInput,
    SimplePublicObjectInputForCreate,
)

from connectors.hubspot.mapping import OBJECT_TYPES as SOURCES
from connectors.hubspot.sandbox.objects import Limits
from connectors.hubspot.sandbox.seed import ASSOCIATION_TYPES, date_text, number_text, render
from connectors.hubspot.sandbox.server import FaultConfig, HubSpotApp, SandboxSettings
from connectors.hubspot.sandbox.store import MODIFIED_PROPERTY, HubSpotStore
from connectors.sandbox_kit.deal_model import build_world
from connectors.sandbox_kit.harness import CrmWriter, SandboxHarness, ServedCrmSandbox
from connectors.sandbox_kit.server import ServedSandbox

DEFAULT_TOKEN = "pat-na1-00000000-0000-4000-8000-accruesandbox"
WRONG_TOKEN = "pat-na1-00000000-0000-4000-8000-neverissued00"
OAUTH_CLIENT = ("accrue-concierge", "")  # the concierge's stand-in app (no secret)
TEST_CLIENT = ("accrue-test-app", "test-app-secret")
DEMO_INDEX_LAG = timedelta(seconds=5)
# Common column -> HubSpot property, per common object.
PROPERTIES: dict[str, dict[str, str]] = {
    "account": {"name": "name", "industry": "industry", "employee_count": "numberofemployees",
                "annual_revenue": "annualrevenue", "billing_country": "country",
                "billing_state": "state", "website": "website", "account_type": "type",
                "owner_id": "hubspot_owner_id", "parent_id": "hs_parent_company_id"},
    "contact": {"first_name": "firstname", "last_name": "lastname", "email": "email",
                "title": "jobtitle", "account_id": "associatedcompanyid",
                "owner_id": "hubspot_owner_id"},
    "opportunity": {"name": "dealname", "amount": "amount", "close_date": "closedate",
                    "stage": "dealstage", "owner_id": "hubspot_owner_id",
                    "opportunity_type": "dealtype", "lead_source": "lead_source",
                    "probability": "hs_deal_stage_probability"},
}


def _text(value: Any) -> str | None:
    if isinstance(value, date | datetime):
        return date_text(value)
    return number_text(value) if not isinstance(value, str) else value


class HubSpotWriter(CrmWriter):
    """Writes through `hubspot.Client`, translating common-model fields into properties."""

    def __init__(self, sandbox: ServedPortal) -> None:
        self.sandbox = sandbox
        self.client = Client.create(access_token=sandbox.app.settings.private_app_token,
                                    host=sandbox.url)
        self._stages: dict[str, str] | None = None

    def _api(self, object_name: str) -> Any:
        if object_name not in PROPERTIES:
            raise NotImplementedError(f"the HubSpot writer does not write {object_name}")
        return getattr(self.client.crm, SOURCES[object_name]).basic_api

    def _stage_id(self, label: str) -> str:
        if self._stages is None:
            pipelines = self.client.crm.pipelines.pipelines_api.get_all("deals").results
            self._stages = {s.label: s.id for p in pipelines for s in p.stages}
        if label not in self._stages:
            raise ValueError(f"the portal has no deal stage {label!r}")
        return self._stages[label]

    def _properties(self, object_name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        names = PROPERTIES[object_name]
        props: dict[str, Any] = {}
        for column, value in fields.items():
            if column == "account_id" and object_name == "opportunity":
                continue  # an association, not a property
            if column not in names:
                raise ValueError(f"the HubSpot writer cannot set {object_name}.{column}")
            if column == "stage":
                value = self._stage_id(str(value))
            elif column == "probability" and value is not None:
                value = number_text(float(value) / 100)
            props[names[column]] = _text(value)
        return props

    def create(self, object_name: str, fields: Mapping[str, Any]) -> str:
        api = self._api(object_name)
        associations = []
        if object_name == "opportunity" and fields.get("account_id"):
            associations = [PublicAssociationsForObject(
                to=PublicObjectId(id=str(fields["account_id"])),
                types=[AssociationSpec(association_category="HUBSPOT_DEFINED",
                                       association_type_id=ASSOCIATION_TYPES[
                                           ("deals", "companies")])])]
        created = api.create(SimplePublicObjectInputForCreate(
            properties=self._properties(object_name, fields), associations=associations))
        return str(created.id)

    def update(self, object_name: str, source_id: str, fields: Mapping[str, Any]) -> None:
        self._api(object_name).update(source_id, SimplePublicObjectInput(
            properties=self._properties(object_name, fields)))

    def delete(self, object_name: str, source_id: str) -> None:
        self._api(object_name).archive(source_id)

    def write_raw(self, object_name: str, source_id: str, payload: Mapping[str, Any]) -> None:
        """Store values as they are, past the API's checks; a common column's name stands
        for the property that feeds it (`amount` is the deal's `amount`)."""
        kind = SOURCES[object_name]
        names = PROPERTIES.get(object_name, {})
        props = {names.get(k, k): v for k, v in payload.items()}
        if self.sandbox.store.update(kind, int(source_id), props,
                                     MODIFIED_PROPERTY[kind]) is None:
            raise KeyError(f"no live {kind} {source_id}")


ServedPortal = ServedSandbox[HubSpotStore, HubSpotApp]


class RunningHubSpotSandbox(ServedCrmSandbox[ServedPortal]):
    @property
    def store(self) -> HubSpotStore:
        return self.served.store

    def connection(self) -> tuple[dict[str, str], dict[str, Any]]:
        config: dict[str, Any] = {"auth": "private_app", "sandbox_url": self.url}
        if self.page_size:
            config["page_size"] = self.page_size
        return {"access_token": self.served.app.settings.private_app_token}, config

    def bad_connection(self) -> tuple[dict[str, str], dict[str, Any]]:
        _, config = self.connection()
        return {"access_token": WRONG_TOKEN}, config

    def writer(self) -> HubSpotWriter:
        return HubSpotWriter(self.served)

    def live_count(self, object_name: str) -> int:
        if object_name == "user":  # owners are read whole, archived ones as inactive users
            return len(self.store.owners(archived=False)) + len(
                self.store.owners(archived=True))
        kind = SOURCES.get(object_name)
        return self.store.count(kind) if kind else 0


def serve(path: Path, *, settings: SandboxSettings, clock: Callable[[], datetime] | None,
          index_lag: timedelta, faults: Mapping[str, Any] | None, opportunities: int,
          seed: int, host: str, port: int) -> ServedPortal:
    """Open (or create and seed) the portal at `path` and serve it from a thread."""
    store = HubSpotStore(path, clock, index_lag)
    if store.is_empty():
        now = store.clock()
        anchor = now.replace(hour=0, minute=0, second=0, microsecond=0)
        render(build_world(opportunities, seed, anchor=anchor, activities=False), store)
    store.add_token(settings.private_app_token, "private")
    return ServedPortal.start(store, HubSpotApp(store, settings), faults=faults, host=host,
                              port=port, name="hubspot-sandbox")


class HubSpotHarness(SandboxHarness):
    realistic = False  # True when serving `accrue sandbox hubspot`: HubSpot's own limits

    def connection_at(self, url: str) -> tuple[dict[str, str], dict[str, Any]]:
        return {"access_token": DEFAULT_TOKEN}, {"auth": "private_app", "sandbox_url": url}

    def start(self, path: Path, *, opportunities: int, seed: int = 7,
              page_size: int | None = None, clock: Callable[[], datetime] | None = None,
              faults: Mapping[str, Any] | None = None, host: str = "127.0.0.1", port: int = 0,
              index_lag: timedelta | None = None, search_max_results: int = 10_000,
              rate_limit_max: int | None = None) -> RunningHubSpotSandbox:
        """`search_max_results` small makes tests reach HubSpot's 10,000 cap;
        `rate_limit_max` is high by default (the suites test syncing, not throttling;
        `accrue sandbox hubspot` serves HubSpot's 190 per 10 s); `index_lag` see above."""
        if faults:
            FaultConfig.from_dict(dict(faults))
        limits = replace(Limits(), search_max_results=search_max_results)
        settings = SandboxSettings(DEFAULT_TOKEN, dict([OAUTH_CLIENT, TEST_CLIENT]), limits)
        if rate_limit_max is not None or not self.realistic:
            settings = replace(settings, rate_limit_max=rate_limit_max or 100_000)
        if index_lag is None:
            index_lag = DEMO_INDEX_LAG if self.realistic else timedelta(0)
        served = serve(path, settings=settings, clock=clock, index_lag=index_lag,
                       faults=faults, opportunities=opportunities, seed=seed, host=host,
                       port=port)
        return RunningHubSpotSandbox(served, page_size)

    def serve(self, path: Path, *, opportunities: int, seed: int, host: str, port: int,
              faults: Mapping[str, Any] | None = None) -> None:
        """`accrue sandbox hubspot`: HubSpot's own rate limit and a search index that
        trails writes by DEMO_INDEX_LAG."""
        self.realistic = True
        super().serve(path, opportunities=opportunities, seed=seed, host=host, port=port,
                      faults=faults)
