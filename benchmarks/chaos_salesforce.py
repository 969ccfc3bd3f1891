"""Salesforce's richer chaos: the mutator `benchmarks.chaos` uses for this CRM.

Why Salesforce keeps its own: the kit's writer speaks the common model, but some of
the failures worth provoking are Salesforce's alone — sObject Collections updates
whose records share one SystemModstamp across page boundaries, SOAP undeletes,
custom fields added mid-sync (schema drift), recycle-bin purges that leave deletes
to id reconciliation, line items rolling up into closed deals' amounts, activities
read from two sObjects under one checkpoint. `benchmarks.chaos` finds this module by
its name (`benchmarks.chaos_<key>`) and calls `make_mutator`, and `compare_org`
(`benchmarks.chaos_salesforce_truth`: the org's own queryAll) after the shared
comparison; process control, fault planning and the comparison stay shared.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from benchmarks.chaos_activities import ActivityMutations
from benchmarks.chaos_mutator import MutatorBase
from benchmarks.chaos_process import ChaosError
from benchmarks.chaos_salesforce_truth import compare_org
from benchmarks.chaos_worker import Connection
from connectors.salesforce.sandbox.standard_objects import INDUSTRIES, LEAD_SOURCES, STAGES
from connectors.salesforce.transport import sandbox_session, soap_undelete
from connectors.sandbox_kit.harness import RunningCrmSandbox

API_DAILY_LIMIT = 10_000_000  # far away: the quota *fault* is what the run injects
BATCH_HEADER = {"Sforce-Query-Options": "batchSize=2000"}
OPEN_STAGES = [name for name, (_, closed, _, _) in STAGES.items() if not closed]
CLOSED_STAGES = [name for name, (_, closed, _, _) in STAGES.items() if closed]
CUSTOM_TYPES = ("string", "double", "int", "date", "picklist", "currency")
CUSTOM_PICKLIST = ["Red", "Amber", "Green"]
__all__ = ["SalesforceMutator", "compare_org", "make_mutator"]


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


def _timed(url: str, timeout: float) -> requests.Session:
    """The sandbox session with a timeout on every call (simple-salesforce sets none)."""
    session = sandbox_session(url)
    send = session.request

    def request(method: str, address: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", timeout)
        return send(method, address, **kwargs)

    session.request = request  # type: ignore[method-assign,assignment]
    return session


def _client(url: str, secrets: Mapping[str, str], timeout: float = 30.0) -> Salesforce:
    """A password + token login with the real client, as a user's integration does."""
    return Salesforce(username=secrets["username"], password=secrets["password"],
                      security_token=secrets["security_token"],
                      session=_timed(url, timeout))


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



class SalesforceMutator(ActivityMutations, MutatorBase):
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
        super().__init__(rng)
        self.url = url
        self.secrets = secrets
        self.pools = pools
        self.org = org
        self.admin = admin
        self.allow_purge = allow_purge
        self.sf: Salesforce | None = None
        self.operations = [
            (5, self.create_account), (7, self.create_contact), (4, self.create_lead),
            (7, self.create_opportunity), (9, self.update_closed_opportunity),
            (7, self.update_open_opportunity), (7, self.update_line_item),
            (4, self.update_account), (5, self.update_contact), (3, self.update_lead),
            (1, self.update_product), (1, self.update_price_entry), (1, self.update_user),
            (2, self.bulk_update), (10, self.delete_record), (5, self.undelete_record),
            (1, self.add_custom_field), (0.3 if allow_purge else 0, self.purge),
            (5, self.log_activity), (3, self.update_activity),
        ]

    def connect(self) -> None:
        self.sf = _client(self.url, self.secrets)

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
            made = self._write("create_line", functools.partial(
                self._sobject("OpportunityLineItem").create, line))
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


def make_mutator(org: RunningCrmSandbox, connection: Connection, rng: random.Random,
                 memory: dict[str, Any], *, purge: bool) -> SalesforceMutator:
    """The richer mutator, its pools read with faults off; `memory` keeps the org's
    bookkeeping (deleted roots, custom fields) across trials."""
    url = str(connection.config["sandbox_url"])
    secrets = connection.secrets
    admin = Admin(url)
    setup = _client(url, secrets)
    if "org" not in memory:
        admin.call("POST", "config", {"api_daily_limit": API_DAILY_LIMIT})
        memory["org"] = load_org_state(setup)
    return SalesforceMutator(url, secrets, load_pools(setup), memory["org"], admin, rng,
                             allow_purge=purge)
