"""The Salesforce sandbox, exercised through the real simple-salesforce client: logins,
sessions, describe, limits and ids. The other test_sandbox_salesforce_* modules import the
helpers here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from accrue_pipelines_tests.fixtures_sandbox import SandboxClock
from connectors.salesforce.sandbox import RunningSandbox
from connectors.salesforce.sandbox.ids import normalize_id, to_18
from connectors.salesforce.transport import sandbox_session

FIELD_KEYS = {
    "name", "label", "type", "length", "precision", "scale", "nillable", "calculated", "custom",
    "compoundFieldName", "filterable", "sortable", "createable", "updateable",
    "defaultedOnCreate", "referenceTo", "relationshipName", "picklistValues",
}
SOBJECT_KEYS = {
    "name", "label", "labelPlural", "keyPrefix", "custom", "queryable", "replicateable",
    "retrieveable", "createable", "updateable", "deletable", "urls",
}


def admin(sandbox: RunningSandbox, method: str, path: str, body: Any = None) -> Any:
    response = requests.request(method, f"{sandbox.url}/_sandbox/{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json() if response.content else None


def error_code(error: Exception) -> str:
    content = error.content  # type: ignore[attr-defined]
    return content[0]["errorCode"]


def clock_of(sandbox: RunningSandbox) -> SandboxClock:
    clock = sandbox.sandbox.clock
    assert isinstance(clock, SandboxClock)
    return clock


def stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


def all_records(sf: Salesforce, soql: str, include_deleted: bool = False) -> list[dict[str, Any]]:
    return list(sf.query_all(soql, include_deleted=include_deleted)["records"])


# -- login and sessions ------------------------------------------------------


def test_password_login_points_client_at_sandbox(sf_sandbox: RunningSandbox,
                                                 sf_client: Salesforce) -> None:
    assert sf_client.sf_instance == f"127.0.0.1:{sf_sandbox.port}"
    assert sf_client.session_id.startswith(sf_sandbox.sandbox.org_id[:15] + "!")
    assert sf_client.is_sandbox() is True
    org = sf_client.query("SELECT Id, Name, IsSandbox FROM Organization")["records"][0]
    assert org["Id"] == sf_sandbox.sandbox.org_id and org["IsSandbox"] is True


@pytest.mark.parametrize("which", ["password", "security_token", "username"])
def test_bad_credentials_fail_with_invalid_login(sf_sandbox: RunningSandbox, which: str) -> None:
    credentials = {"username": sf_sandbox.username, "password": sf_sandbox.password,
                   "security_token": sf_sandbox.security_token}
    credentials[which] = credentials[which] + "x"
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        Salesforce(**credentials, session=sandbox_session(sf_sandbox.url))
    assert failure.value.code == "INVALID_LOGIN"
    assert "Invalid username, password, security token" in failure.value.auth_message


def test_session_id_access_and_unknown_bearer(sf_sandbox: RunningSandbox,
                                              sf_client: Salesforce) -> None:
    direct = Salesforce(session_id=sf_client.session_id, instance_url=sf_sandbox.url,
                        session=sandbox_session(sf_sandbox.url))
    assert direct.sf_instance == sf_client.sf_instance
    assert direct.query("SELECT COUNT() FROM Account")["totalSize"] == 24
    stranger = Salesforce(session_id="00D000000000001!not-a-session",
                          instance_url=f"https://127.0.0.1:{sf_sandbox.port}",
                          session=sandbox_session(sf_sandbox.url))
    with pytest.raises(SalesforceExpiredSession) as failure:
        stranger.query("SELECT Id FROM Account")
    assert failure.value.content == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_expired_sessions_are_renewed_by_password_clients(sf_sandbox: RunningSandbox,
                                                          sf_client: Salesforce) -> None:
    old_session = sf_client.session_id
    sf_client.query("SELECT Id FROM Account LIMIT 1")
    assert admin(sf_sandbox, "POST", "sessions/expire")["expired"] >= 1
    assert sf_client.query("SELECT COUNT() FROM Account")["totalSize"] == 24
    assert sf_client.session_id != old_session
    direct = Salesforce(session_id=old_session, instance_url=sf_sandbox.url,
                        session=sandbox_session(sf_sandbox.url))
    with pytest.raises(SalesforceExpiredSession):
        direct.query("SELECT Id FROM Account")
    # Sessions also lapse with time: two idle hours later the client logs in again.
    renewed = sf_client.session_id
    clock_of(sf_sandbox).advance(hours=2, minutes=1)
    assert sf_client.Account.describe()["name"] == "Account"
    assert sf_client.session_id != renewed


def test_rest_errors_are_salesforce_shaped(sf_sandbox: RunningSandbox,
                                           sf_client: Salesforce) -> None:
    base = f"{sf_sandbox.url}/services/data/v59.0"
    anonymous = requests.get(f"{base}/query/", params={"q": "SELECT Id FROM Account"}, timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json() == [{"message": "Session expired or invalid",
                                 "errorCode": "INVALID_SESSION_ID"}]
    headers = {"Authorization": f"Bearer {sf_client.session_id}"}
    missing = requests.get(f"{base}/nothing/here", headers=headers, timeout=10)
    assert missing.status_code == 404 and missing.json()[0]["errorCode"] == "NOT_FOUND"
    ok = requests.get(f"{base}/limits/", headers=headers, timeout=10)
    assert ok.headers["Sforce-Limit-Info"].startswith("api-usage=")
    versions = requests.get(f"{sf_sandbox.url}/services/data/", timeout=10).json()
    assert {"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"} in versions


# -- describe and custom fields ----------------------------------------------


def test_describe_has_every_key_on_every_field(sf_client: Salesforce) -> None:
    listing = sf_client.describe()
    assert listing["encoding"] == "UTF-8" and listing["maxBatchSize"] == 200
    names = {o["name"] for o in listing["sobjects"]}
    assert {"Account", "Contact", "Lead", "Opportunity", "OpportunityLineItem", "Product2",
            "Pricebook2", "PricebookEntry", "User", "Organization"} <= names
    for entry in listing["sobjects"]:
        assert set(entry) >= SOBJECT_KEYS, entry["name"]
        described = getattr(sf_client, entry["name"]).describe()
        assert described["keyPrefix"] == entry["keyPrefix"] and described["custom"] is False
        for fld in described["fields"]:
            assert set(fld) >= FIELD_KEYS, (entry["name"], fld["name"])
            assert isinstance(fld["referenceTo"], list)
            assert isinstance(fld["picklistValues"], list)
    account = {f["name"]: f for f in sf_client.Account.describe()["fields"]}
    assert account["BillingAddress"]["type"] == "address"
    for part in ("BillingStreet", "BillingCity", "BillingState", "BillingPostalCode",
                 "BillingCountry"):
        assert account[part]["compoundFieldName"] == "BillingAddress"
    assert account["Revenue_Per_Employee__c"]["calculated"] is True
    assert {"Id", "IsDeleted", "CreatedDate", "CreatedById", "LastModifiedDate",
            "LastModifiedById", "SystemModstamp", "OwnerId"} <= set(account)
    lines = {f["name"] for f in sf_client.OpportunityLineItem.describe()["fields"]}
    assert "OwnerId" not in lines and "TotalPrice" in lines
    meta = sf_client.Opportunity.metadata()
    assert meta["objectDescribe"]["name"] == "Opportunity" and len(meta["recentItems"]) == 5
    billing = sf_client.query("SELECT BillingAddress FROM Account LIMIT 1")["records"][0]
    assert set(billing["BillingAddress"]) >= {"street", "city", "state", "postalCode", "country"}


def test_custom_field_added_at_run_time(sf_sandbox: RunningSandbox, sf_client: Salesforce) -> None:
    spec = {"sobject": "Opportunity", "name": "Competitor__c", "type": "string",
            "label": "Competitor", "length": 255}
    assert admin(sf_sandbox, "POST", "fields", spec)["name"] == "Competitor__c"
    fields = {f["name"]: f for f in sf_client.Opportunity.describe()["fields"]}
    assert fields["Competitor__c"]["custom"] is True and fields["Competitor__c"]["length"] == 255
    target = sf_client.query("SELECT Id FROM Opportunity LIMIT 1")["records"][0]["Id"]
    sf_client.Opportunity.update(target, {"Competitor__c": "Globex"})
    found = sf_client.query("SELECT Id, Competitor__c FROM Opportunity "
                            "WHERE competitor__c = 'globex'")
    assert [(r["Id"], r["Competitor__c"]) for r in found["records"]] == [(target, "Globex")]
    assert sf_client.query("SELECT COUNT() FROM Opportunity WHERE Competitor__c = null")[
        "totalSize"] == 119
    requests.delete(f"{sf_sandbox.url}/_sandbox/fields/Opportunity/Competitor__c",
                    timeout=10).raise_for_status()
    assert "Competitor__c" not in {f["name"] for f in sf_client.Opportunity.describe()["fields"]}
    with pytest.raises(SalesforceMalformedRequest) as failure:
        sf_client.query("SELECT Competitor__c FROM Opportunity")
    assert error_code(failure.value) == "INVALID_FIELD"


# -- limits ------------------------------------------------------------------


def test_limits_api_usage_and_request_limit(sf_sandbox: RunningSandbox,
                                            sf_client: Salesforce) -> None:
    limits = sf_client.limits()
    assert limits["DailyApiRequests"]["Max"] == 100000
    usage = sf_client.api_usage["api-usage"]
    assert usage.total == 100000
    assert limits["DailyApiRequests"]["Remaining"] == usage.total - usage.used
    sf_client.query("SELECT Id FROM Account LIMIT 1")
    assert sf_client.api_usage["api-usage"].used == usage.used + 1
    admin(sf_sandbox, "POST", "config", {"api_daily_limit": usage.used + 2})
    sf_client.query("SELECT Id FROM Account LIMIT 1")
    with pytest.raises(SalesforceRefusedRequest) as failure:
        sf_client.query("SELECT Id FROM Account LIMIT 1")
    assert error_code(failure.value) == "REQUEST_LIMIT_EXCEEDED"
    clock_of(sf_sandbox).advance(days=1)  # a new day, a fresh allowance
    assert sf_client.query("SELECT COUNT() FROM Account")["totalSize"] == 24


def test_ids_are_real_salesforce_ids(sf_client: Salesforce) -> None:
    for table, prefix in (("Account", "001"), ("Contact", "003"), ("Lead", "00Q"),
                          ("Opportunity", "006"), ("OpportunityLineItem", "00k"),
                          ("Product2", "01t"), ("Pricebook2", "01s"),
                          ("PricebookEntry", "01u"), ("User", "005")):
        for record in sf_client.query(f"SELECT Id FROM {table} LIMIT 5")["records"]:
            record_id = record["Id"]
            assert len(record_id) == 18 and record_id.startswith(prefix)
            assert to_18(record_id[:15]) == record_id
            assert normalize_id(record_id.lower()) == record_id


def test_oauth_password_grant(sf_sandbox: RunningSandbox) -> None:
    sf = Salesforce(username=sf_sandbox.username,
                    password=sf_sandbox.password + sf_sandbox.security_token,
                    consumer_key="any-client-id", consumer_secret="any-secret",
                    session=sandbox_session(sf_sandbox.url))
    assert sf.sf_instance == f"127.0.0.1:{sf_sandbox.port}"
    assert sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == 120
    with pytest.raises(SalesforceAuthenticationFailed) as failure:
        Salesforce(username=sf_sandbox.username, password="wrong", consumer_key="id",
                   consumer_secret="secret", session=sandbox_session(sf_sandbox.url))
    assert failure.value.code == "invalid_grant"
