"""Starting a Salesforce sandbox the way a demo or a test needs it: its size apart from its
seed, an empty org that still has what every org has, chosen credentials, and users
created through the API as an admin would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from accrue_pipelines_tests.fixtures_sandbox import login, start_sandbox


def _error_code(error: SalesforceMalformedRequest) -> str:
    content: Any = error.content
    return str(content[0]["errorCode"])


def test_size_and_seed_are_separate(tmp_path: Path) -> None:
    sizes = {}
    for name, seed in (("a", 5), ("b", 6)):
        with start_sandbox(tmp_path / f"{name}.db", seed=seed, n_opportunities=30) as sandbox:
            sf = login(sandbox)
            assert sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == 30
            sizes[name] = sorted(r["Amount"] for r in sf.query_all(
                "SELECT Amount FROM Opportunity")["records"])
    assert sizes["a"] != sizes["b"]


def test_an_empty_org_has_the_standard_price_book_and_the_integration_user(
    tmp_path: Path,
) -> None:
    with start_sandbox(tmp_path / "empty.db", seed=3, n_opportunities=0,
                       password="chosen-pw", security_token="TOKEN42") as sandbox:
        assert (sandbox.password, sandbox.security_token) == ("chosen-pw", "TOKEN42")
        sf = login(sandbox)
        books = sf.query("SELECT Id, Name, IsStandard FROM Pricebook2")["records"]
        assert [(b["Name"], b["IsStandard"]) for b in books] == [("Standard Price Book", True)]
        users = sf.query("SELECT Username FROM User")["records"]
        assert [u["Username"] for u in users] == [sandbox.username]
        for sobject in ("Account", "Opportunity", "Product2", "Lead"):
            assert sf.query(f"SELECT COUNT() FROM {sobject}")["totalSize"] == 0
        # A seller can build a catalogue on it as in a fresh org.
        product = sf.Product2.create({"Name": "Widget", "IsActive": True})["id"]
        sf.PricebookEntry.create({"Pricebook2Id": books[0]["Id"], "Product2Id": product,
                                  "UnitPrice": 10, "IsActive": True})


def _new_user(sf: Any, username: str, **changes: Any) -> dict[str, Any]:
    profile = sf.query("SELECT ProfileId FROM User LIMIT 1")["records"][0]["ProfileId"]
    fields = {"Username": username, "LastName": "Nguyen", "FirstName": "Ana",
              "Email": "ana@example.test", "Alias": "anguy", "TimeZoneSidKey": "GMT",
              "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8",
              "LanguageLocaleKey": "en_US", "ProfileId": profile}
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not None}


def test_users_are_created_through_the_api_with_salesforces_required_fields(
    tmp_path: Path,
) -> None:
    with start_sandbox(tmp_path / "users.db", n_opportunities=0) as sandbox:
        sf = login(sandbox)
        created = sf.User.create(_new_user(sf, "ana@example.test"))
        user = sf.User.get(created["id"])
        assert (user["Name"], user["IsActive"], user["UserType"]) == (
            "Ana Nguyen", True, "Standard")
        sf.User.update(created["id"], {"Title": "Account Executive"})
        assert sf.User.get(created["id"])["Title"] == "Account Executive"
        cases = (
            (_new_user(sf, "bo@example.test", Alias=None, TimeZoneSidKey=None),
             "REQUIRED_FIELD_MISSING"),
            (_new_user(sf, "ana@example.test"), "DUPLICATE_USERNAME"),
            (_new_user(sf, "cy@example.test", ProfileId="00e000000000000AAA"),
             "INVALID_CROSS_REFERENCE_KEY"),
        )
        for fields, code in cases:
            with pytest.raises(SalesforceMalformedRequest) as refused:
                sf.User.create(fields)
            assert _error_code(refused.value) == code
        assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 2
