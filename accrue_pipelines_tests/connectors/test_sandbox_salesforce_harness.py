"""Salesforce behind the kit's harness API: what the shared contract suite, the chaos runs
and the demo use to start an org and change it with simple-salesforce."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import requests

from connectors.registry import create_connector
from connectors.salesforce.mapping import map_record
from connectors.salesforce.sandbox.harness import RunningSalesforceSandbox, SalesforceHarness


@pytest.fixture
def org(tmp_path: Path) -> Iterator[RunningSalesforceSandbox]:
    with SalesforceHarness().start(tmp_path / "org.db", opportunities=20, seed=4,
                                   page_size=50) as running:
        yield running


def test_the_connection_a_tenant_stores_works_and_a_wrong_one_is_refused(
    org: RunningSalesforceSandbox,
) -> None:
    secrets, config = org.connection()
    assert config["sandbox_url"] == org.url
    assert create_connector("salesforce", secrets, config).check().ok
    bad = create_connector("salesforce", *org.bad_connection()).check()
    assert not bad.ok and bad.field == "password"
    assert SalesforceHarness().connection_at(org.url)[1]["sandbox_url"] == org.url


def test_the_writer_speaks_the_common_model(org: RunningSalesforceSandbox) -> None:
    writer = org.writer()
    before = {name: org.live_count(name) for name in ("account", "opportunity", "user")}
    account = writer.create("account", {"name": "Harness Ltd", "industry": "Retail",
                                        "employee_count": 40, "source_created_at": None})
    product = writer.create("product", {"name": "Gizmo", "is_active": True,
                                        "family": "Platform"})
    deal = writer.create("opportunity", {
        "name": "Harness deal", "account_id": account, "amount": 1200.0,
        "stage": "Prospecting", "close_date": date(2030, 1, 31), "is_closed": False})
    book = writer.sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]
    writer.create("price_book_entry", {"price_book_id": book["Id"], "product_id": product,
                                       "unit_price": 100.0, "is_active": True})
    line = writer.create("opportunity_line", {"opportunity_id": deal, "product_id": product,
                                              "quantity": 3.0, "unit_price": 90.0,
                                              "total_price": 270.0})
    user = writer.create("user", {"name": "Ana Nguyen", "email": "ana@harness.test",
                                  "title": "Account Executive", "is_active": True})
    writer.create("activity", {"subject": "Demo", "activity_type": "meeting",
                               "activity_at": datetime(2026, 1, 2, 15, tzinfo=UTC),
                               "duration_minutes": 45.0, "opportunity_id": deal})
    writer.update("account", account, {"employee_count": 55})
    assert org.live_count("account") == before["account"] + 1
    assert org.live_count("opportunity") == before["opportunity"] + 1
    assert org.live_count("user") == before["user"] + 1
    got = map_record("account", writer.sf.Account.get(account))
    assert got.fields["employee_count"] == 55 and got.fields["name"] == "Harness Ltd"
    assert writer.sf.OpportunityLineItem.get(line)["TotalPrice"] == 270.0
    assert writer.sf.User.get(user)["Name"] == "Ana Nguyen"
    writer.delete("opportunity", deal)
    assert org.live_count("opportunity") == before["opportunity"]
    writer.write_raw("account", account, {"NumberOfEmployees": "lots"})
    assert writer.sf.Account.get(account)["NumberOfEmployees"] == "lots"


def test_fault_switches_turn_on_and_off(org: RunningSalesforceSandbox) -> None:
    sf = org.writer().sf
    org.set_faults({"error_rate": 1.0, "error_statuses": [503]})
    with pytest.raises(Exception, match="503|Unavailable|unavailable"):
        sf.query("SELECT Id FROM Account LIMIT 1")
    org.set_faults({})
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] > 0
    assert requests.get(f"{org.url}/_sandbox/health", timeout=5).ok


def test_the_integration_users_password_and_token_are_chosen_at_start(tmp_path: Path) -> None:
    harness = SalesforceHarness()
    with harness.start(tmp_path / "creds.db", opportunities=0, password="pw-9",
                       security_token="TOK9") as running:
        secrets, config = running.connection()
        assert (secrets["password"], secrets["security_token"]) == ("pw-9", "TOK9")
        assert create_connector("salesforce", secrets, config).check().ok
        assert running.live_count("opportunity") == 0 and running.live_count("user") == 1
