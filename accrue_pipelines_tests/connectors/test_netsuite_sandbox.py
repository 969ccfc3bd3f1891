"""The NetSuite sandbox as a SuiteTalk REST client sees it: SuiteQL paging and its limits,
the account's time zone, the record service, and both sign-ins (TBA and OAuth 2.0 M2M)
refusing what NetSuite refuses, with the reason only in the Login Audit Trail."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from requests_oauthlib import OAuth1

from accrue_pipelines_tests.fixtures_sandbox import SandboxClock
from connectors.netsuite.client import (
    SUITEQL_PATH,
    TOKEN_PATH,
    M2mCredentials,
    NetSuiteClient,
    NetSuiteError,
    TbaCredentials,
    api_host,
)
from connectors.netsuite.sandbox.harness import (
    CERTIFICATE_ID,
    CLIENT_ID,
    GOOD_KEY,
    TBA,
    WRONG_KEY,
    NetSuiteHarness,
    RunningNetSuite,
    public_key_pem,
)
from connectors.sandbox_kit.transport import sandbox_session


@pytest.fixture
def account(tmp_path: Path) -> Iterator[RunningNetSuite]:
    running = NetSuiteHarness().start(tmp_path / "ns.db", opportunities=12, clock=SandboxClock())
    yield running
    running.stop()


def tba_client(account: RunningNetSuite, **changes: str) -> NetSuiteClient:
    creds = TbaCredentials(**{**TBA.__dict__, **changes})
    return NetSuiteClient(account.settings.account_id, tba=creds, sandbox_url=account.url,
                          max_attempts=1)


def m2m_client(account: RunningNetSuite, key: str = GOOD_KEY, **kw: str) -> NetSuiteClient:
    creds = M2mCredentials(kw.get("client_id", CLIENT_ID),
                           kw.get("certificate_id", CERTIFICATE_ID), key)
    return NetSuiteClient(account.settings.account_id, m2m=creds, sandbox_url=account.url,
                          max_attempts=1)


def raw_post(account: RunningNetSuite, auth: OAuth1 | None, *, prefer: bool = True,
             limit: int = 5, offset: int = 0, q: str = "SELECT id FROM customer ORDER BY id"
             ) -> requests.Response:
    """A SuiteQL call signed by requests-oauthlib itself (fixed nonces, stale stamps)."""
    session = sandbox_session(account.url)
    url = f"https://{api_host(account.settings.account_id)}{SUITEQL_PATH}"
    headers = {"Prefer": "transient"} if prefer else {}
    return session.post(url, params={"limit": limit, "offset": offset}, json={"q": q},
                        headers=headers, auth=auth, timeout=10)


def oauth(account: RunningNetSuite, **kw: str) -> OAuth1:
    return OAuth1(TBA.consumer_key, client_secret=kw.pop("secret", TBA.consumer_secret),
                  resource_owner_key=TBA.token_id, resource_owner_secret=TBA.token_secret,
                  signature_method=SIGNATURE_HMAC_SHA256,
                  realm=kw.pop("realm", account.settings.account_id), **kw)


def test_suiteql_pages_with_netsuite_shapes(account: RunningNetSuite) -> None:
    client = tba_client(account)
    page = client.suiteql("SELECT id, companyname, url, parent FROM customer ORDER BY id",
                          limit=2, offset=2)
    assert set(page) == {"links", "count", "hasMore", "items", "offset", "totalResults"}
    assert page["count"] == 2 and page["offset"] == 2 and page["hasMore"] is True
    assert page["totalResults"] == account.live_count("account")
    assert {link["rel"] for link in page["links"]} >= {"self", "next", "first", "last"}
    item = page["items"][0]
    assert item["links"] == [] and isinstance(item["id"], str) and item["id"] == "3"
    assert "parent" not in item  # a null column is left out, as NetSuite does
    count = client.suiteql("SELECT COUNT(*) FROM transaction WHERE type = 'Opprtnty'")
    assert count["items"][0]["expr1"] == "12"


def test_paging_limits_are_netsuites(account: RunningNetSuite) -> None:
    auth = oauth(account)
    assert raw_post(account, auth, limit=1001).status_code == 400
    assert raw_post(account, auth, limit=5, offset=3).status_code == 400  # not a multiple
    missing = raw_post(account, auth, prefer=False)
    assert missing.status_code == 400
    assert missing.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_HEADER"
    account.settings.max_results = 10
    beyond = raw_post(account, auth, limit=5, offset=10)
    assert beyond.status_code == 400 and "beyond 10 results" in beyond.text
    assert raw_post(account, auth, limit=5, offset=5).status_code == 200


def test_unknown_fields_and_tables_are_refused(account: RunningNetSuite) -> None:
    client = tba_client(account)
    for query in ("SELECT nosuchfield FROM customer", "SELECT id FROM nosuchtable",
                  "DELETE FROM customer", "SELECT id FROM customer; DROP TABLE customer"):
        with pytest.raises(NetSuiteError) as refused:
            client.suiteql(query)
        assert refused.value.status == 400 and refused.value.code == "INVALID_PARAMETER"
    assert account.live_count("account") > 0


def test_dates_show_as_days_and_to_char_in_the_accounts_zone(account: RunningNetSuite
                                                             ) -> None:
    """A bare date-time column shows the account's date only; TO_CHAR gives the time, in
    the account's zone (Los Angeles), and TO_TIMESTAMP reads literals in it."""
    client = tba_client(account)
    account.store.update("customer", 1, {"lastmodifieddate": 1_700_000_000.0}, touch=False)
    item = client.suiteql(
        "SELECT lastmodifieddate, TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS at "
        "FROM customer WHERE id = 1")["items"][0]
    # 2023-11-14 22:13:20 UTC is 14:13:20 in Los Angeles (PST, UTC-8)
    assert item == {"links": [], "lastmodifieddate": "11/14/2023", "at": "2023-11-14 14:13:20"}
    found = client.suiteql("SELECT id FROM customer WHERE lastmodifieddate = "
                           "TO_TIMESTAMP('2023-11-14 14:13:20', 'YYYY-MM-DD HH24:MI:SS')")
    assert [i["id"] for i in found["items"]] == ["1"]


def test_the_concurrency_limit_answers_429(account: RunningNetSuite) -> None:
    account.settings.concurrency_limit = 1
    account.set_faults({"latency_ms": 500})
    statuses: list[int] = []

    def call(nonce: str) -> None:
        statuses.append(raw_post(account, oauth(account, nonce=nonce)).status_code)

    threads = [threading.Thread(target=call, args=(f"n{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 429]


def test_the_record_service_moves_stamps_and_logs_deletes(account: RunningNetSuite) -> None:
    client = m2m_client(account)
    new = client.create("customer", {"companyName": "Acme", "salesRep": {"id": "2"},
                                     "isInactive": False})
    stamp = "TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS at"
    first = client.suiteql(f"SELECT {stamp} FROM customer WHERE id = {new}")["items"][0]["at"]
    account.store.clock.advance(minutes=5)  # type: ignore[attr-defined]
    client.update("customer", new, {"url": "acme.example"})
    after = client.suiteql(f"SELECT {stamp}, url FROM customer WHERE id = {new}")["items"][0]
    assert after["url"] == "acme.example" and after["at"] > first
    assert client.get("customer", new)["salesrep"] == {"id": "2"}
    with pytest.raises(NetSuiteError) as refused:
        client.update("customer", new, {"nosuchfield": 1})
    assert refused.value.status == 400
    client.delete("customer", new)
    deleted = client.suiteql("SELECT recordid, type FROM deletedrecord")["items"]
    assert {"links": [], "recordid": str(new), "type": "customer"} in deleted
    with pytest.raises(NetSuiteError) as gone:
        client.get("customer", new)
    assert gone.value.status == 404 and gone.value.code == "NONEXISTENT_ID"


def test_tba_signs_in_and_refuses_what_netsuite_refuses(account: RunningNetSuite) -> None:
    assert tba_client(account).suiteql("SELECT id FROM employee")["count"] > 0
    cases = {
        "InvalidSignature": raw_post(account, oauth(account, secret="wrong")),
        "InvalidAccount": raw_post(account, oauth(account, realm="9999999")),
        "InvalidTimestamp": raw_post(account, oauth(account, timestamp=str(int(time.time())
                                                                            - 3600))),
    }
    reused = oauth(account, nonce="same-nonce-twice")
    assert raw_post(account, reused).status_code == 200
    cases["UsedNonce"] = raw_post(account, reused)
    with pytest.raises(NetSuiteError) as unknown:
        tba_client(account, consumer_key="nobody").suiteql("SELECT id FROM customer")
    assert unknown.value.problem == "consumer_key_unknown"
    for audit, response in cases.items():
        assert response.status_code == 401, audit
        assert response.json()["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"
        assert audit in [detail for _, _, detail in account.store.login_audit()]
    assert 'oauth_problem="nonce_used"' in cases["UsedNonce"].headers["WWW-Authenticate"]


def test_m2m_issues_bearer_tokens_for_a_signed_assertion(account: RunningNetSuite) -> None:
    client = m2m_client(account)
    assert client.suiteql("SELECT id FROM employee")["count"] > 0
    token = client._token
    assert token is not None and token[1] - time.time() > 3000  # about an hour
    client.suiteql("SELECT id FROM employee")
    assert client._token == token  # reused, not asked for per call
    account.set_faults({"session_expiry_after": 0, "session_expiry_calls": 1})
    assert client.suiteql("SELECT id FROM employee")["count"] > 0  # expired, renewed once
    assert client._token != token


@pytest.mark.parametrize(("change", "error"), [
    ({"key": WRONG_KEY}, "invalid_grant"),
    ({"certificate_id": "nope"}, "invalid_client"),
    ({"client_id": "someone-else"}, "invalid_grant"),
])
def test_m2m_refuses_a_bad_assertion(account: RunningNetSuite, change: dict[str, str],
                                     error: str) -> None:
    with pytest.raises(NetSuiteError) as refused:
        m2m_client(account, **change).suiteql("SELECT id FROM employee")
    assert refused.value.code == error


def test_m2m_refuses_an_expired_or_unscoped_assertion(account: RunningNetSuite) -> None:
    session = sandbox_session(account.url)
    url = f"https://{api_host(account.settings.account_id)}{TOKEN_PATH}"
    now = int(time.time())
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for claims, key, algorithm in (
            ({"exp": now - 3600, "iat": now - 4000}, GOOD_KEY, "ES256"),
            ({"exp": now + 600, "iat": now, "scope": "restlets"}, GOOD_KEY, "ES256"),
            ({"exp": now + 7200, "iat": now}, GOOD_KEY, "ES256"),
            ({"exp": now + 600, "iat": now}, rsa_key, "RS256")):  # NetSuite takes PS/ES only
        assertion = jwt.encode({"iss": CLIENT_ID, "aud": url,
                                "scope": "restlets, rest_webservices", **claims},
                               key, algorithm=algorithm,  # type: ignore[arg-type]
                               headers={"kid": CERTIFICATE_ID})
        response = session.post(url, data={
            "grant_type": "client_credentials", "client_assertion": assertion,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
        assert response.status_code == 400, claims
        assert response.json()["error"] in ("invalid_grant", "invalid_scope",
                                             "invalid_request"), claims


def test_an_rsa_certificate_signs_with_ps256(account: RunningNetSuite) -> None:
    """The client picks the algorithm from the key: PS256 for RSA (NetSuite takes no RS256)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    account.app.auth.register_certificate("rsa-certificate", CLIENT_ID, public_key_pem(pem))
    client = m2m_client(account, pem, certificate_id="rsa-certificate")
    assert jwt.get_unverified_header(client.client_assertion())["alg"] == "PS256"
    assert client.suiteql("SELECT id FROM employee")["count"] > 0
