"""The Salesforce sandbox's generated data, its persistence across restarts and full pages."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from accrue_pipelines_tests.connectors.test_sandbox_kit_deal_model import assert_price_signal
from accrue_pipelines_tests.connectors.test_sandbox_salesforce import (
    admin,
    all_records,
)
from accrue_pipelines_tests.fixtures_sandbox import login, start_sandbox
from connectors.salesforce.sandbox import RunningSandbox, SalesforceSandbox, seed

# -- generator, persistence, large pages ---------------------------------------


def _dump(path: Path, n: int, random_seed: int) -> dict[str, list[tuple[str, str]]]:
    anchor = datetime(2025, 3, 1, tzinfo=UTC)
    sandbox = SalesforceSandbox(str(path))
    try:
        seed(sandbox, n, random_seed, anchor=anchor)
        with sandbox.store.connection() as conn:
            return {
                name: conn.execute(f'SELECT Id, data FROM "{obj.table}" ORDER BY Id').fetchall()
                for name, obj in sandbox.schema.objects.items()
            }
    finally:
        sandbox.close()


def test_generator_is_deterministic_per_seed(tmp_path: Path) -> None:
    first = _dump(tmp_path / "a.db", 300, 11)
    second = _dump(tmp_path / "b.db", 300, 11)
    other = _dump(tmp_path / "c.db", 300, 12)
    assert first == second
    assert first["Opportunity"] != other["Opportunity"]
    assert len(first["Opportunity"]) == 300 and len(first["Account"]) == 60
    anchor = "2025-03-01T00:00:00.000+0000"
    for name, rows in first.items():
        for _, data in rows:
            record = json.loads(data)
            assert record["CreatedDate"] <= record["LastModifiedDate"] <= record[
                "SystemModstamp"] < anchor or name in ("Organization", "User"), (name, record)


@pytest.fixture(scope="module")
def large_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    path = tmp_path_factory.mktemp("salesforce") / "large.db"
    sandbox = start_sandbox(path, seed=3, n_opportunities=2500, page_size=2000)
    try:
        yield sandbox
    finally:
        sandbox.stop()


def test_generated_outcomes_depend_on_price(large_sandbox: RunningSandbox) -> None:
    sf = login(large_sandbox)
    deals = {r["Id"]: r for r in all_records(
        sf, "SELECT Id, IsWon FROM Opportunity WHERE IsClosed = true")}
    listed: dict[str, float] = {}
    paid: dict[str, float] = {}
    for line in all_records(sf, "SELECT OpportunityId, Quantity, ListPrice, TotalPrice "
                                "FROM OpportunityLineItem"):
        key = line["OpportunityId"]
        listed[key] = listed.get(key, 0.0) + line["Quantity"] * line["ListPrice"]
        paid[key] = paid.get(key, 0.0) + line["TotalPrice"]
    ratios = [(paid[i] / listed[i], deal["IsWon"]) for i, deal in deals.items()]
    assert_price_signal(ratios)
    truth = requests.get(f"{large_sandbox.url}/_sandbox/truth", timeout=10).json()
    assert truth["realized"]["closed_deals"] == len(ratios)
    assert all(s["b"] > 0 for s in truth["segments"].values())


def test_a_full_2000_record_page(large_sandbox: RunningSandbox) -> None:
    sf = login(large_sandbox)
    page = sf.query("SELECT Id, Name, AccountId, Amount, StageName, CloseDate, IsWon, "
                    "CreatedDate, SystemModstamp FROM Opportunity")
    assert len(page["records"]) == 2000 and page["totalSize"] == 2500
    assert page["done"] is False
    rest = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)
    assert len(rest["records"]) == 500 and rest["done"] is True


def test_state_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "persistent.db"
    first = start_sandbox(path, username="ops@example.test", password="pw-1",
                          security_token="TOKEN1")
    try:
        sf = login(first)
        kept = sf.Account.create({"Name": "Survivor Ltd"})["id"]
        counts = {t: sf.query(f"SELECT COUNT() FROM {t}")["totalSize"]
                  for t in ("Account", "Opportunity", "User")}
        admin(first, "POST", "config", {"api_daily_limit": 5000})
        admin(first, "POST", "fields", {"sobject": "Account", "name": "Tier__c",
                                        "type": "picklist", "picklistValues": ["Gold", "Silver"]})
        sf.Account.update(kept, {"Tier__c": "Gold"})
    finally:
        first.stop()
    second = start_sandbox(path, seed=None, n_opportunities=None)
    try:
        assert (second.username, second.password, second.security_token) == (
            "ops@example.test", "pw-1", "TOKEN1")
        sf = login(second)
        assert sf.Account.get(kept)["Tier__c"] == "Gold"
        assert {t: sf.query(f"SELECT COUNT() FROM {t}")["totalSize"] for t in counts} == counts
        assert sf.limits()["DailyApiRequests"]["Max"] == 5000
        user = sf.query("SELECT Username FROM User WHERE Username = 'ops@example.test'")
        assert user["totalSize"] == 1
    finally:
        second.stop()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
