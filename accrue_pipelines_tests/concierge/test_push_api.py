"""The push API's door (issue 13, F8): signatures, 401s that reveal nothing, replays,
400s that name each bad record with nothing stored, 413, 429, isolation, secrets kept out
of logs, answers and the inbox. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine
from standardwebhooks.webhooks import Webhook

from accrue import tenants
from accrue.push import PUSH_CRM_TYPE, credentials
from accrue.push.credentials import IssuedSecret
from accrue.schema import push_credential, push_inbox
from accrue_pipelines_tests.concierge.test_concierge_app import make_app


def make_push_tenant(engine: Engine, tenant_id: str) -> IssuedSecret:
    tenants.add_tenant(engine, tenant_id, f"Push {tenant_id}", PUSH_CRM_TYPE)
    return credentials.issue_secret(engine, tenant_id)


def signed_headers(secret: str | list[str], body: bytes, *, webhook_id: str | None = None,
                   at: datetime | None = None, client_id: str = "") -> dict[str, str]:
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    secrets = [secret] if isinstance(secret, str) else secret
    signatures = " ".join(Webhook(s).sign(webhook_id, at, body.decode()) for s in secrets)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signatures,
        "Accrue-Client-Id": client_id,
        "Content-Type": "application/json",
    }


def record(object_name: str = "account", source_id: str = "A1", action: str = "create",
           occurred_at: str | None = None, **data: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"object": object_name, "id": source_id, "action": action,
                           "data": data or {"name": "Acme"}}
    if occurred_at:
        rec["occurred_at"] = occurred_at
    return rec


class Pusher:
    def __init__(self, client: FlaskClient, tenant_id: str, issued: IssuedSecret) -> None:
        self.client = client
        self.tenant_id = tenant_id
        self.issued = issued

    def push(self, records: Any, *, secret: str | list[str] | None = None,
             body: bytes | None = None, tenant_id: str | None = None,
             client_id: str | None = None, **kwargs: Any) -> Any:
        if body is None:
            body = json.dumps({"records": records}).encode()
        headers = signed_headers(secret if secret is not None else self.issued.secret, body,
                                 client_id=client_id if client_id is not None
                                 else self.issued.client_id, **kwargs)
        return self.client.post(f"/v1/push/{tenant_id or self.tenant_id}/records",
                                data=body, headers=headers)


@pytest.fixture
def app(database_url: str) -> Flask:
    return make_app(database_url)


@pytest.fixture
def pusher(app: Flask, engine: Engine, tenant_id: str) -> Pusher:
    return Pusher(app.test_client(), tenant_id, make_push_tenant(engine, tenant_id))


def inbox_rows(engine: Engine, tenant_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(push_inbox).where(push_inbox.c.tenant_id == tenant_id)
                                 .order_by(push_inbox.c.id)).mappings())


def test_a_signed_batch_is_committed_before_202(pusher: Pusher, engine: Engine) -> None:
    response = pusher.push([record(), record("contact", "C1", account_id="A1")])
    assert response.status_code == 202, response.get_json()
    answer = response.get_json()
    assert answer["status"] == "accepted" and answer["records"] == 2
    assert "unmapped_fields" not in answer
    [row] = inbox_rows(engine, pusher.tenant_id)
    assert row["id"] == answer["receipt_id"] and row["record_count"] == 2
    assert row["processed_at"] is None and row["received_at"] is not None
    assert json.loads(row["body"])["records"][1]["id"] == "C1"
    assert "webhook-signature" not in row["headers"]
    assert row["headers"]["webhook-id"].startswith("msg_")


def test_a_bare_array_is_a_batch_too(pusher: Pusher) -> None:
    body = json.dumps([record()]).encode()
    assert pusher.push(None, body=body).status_code == 202


def test_replayed_webhook_id_gets_the_first_receipt_and_is_stored_once(
        pusher: Pusher, engine: Engine) -> None:
    first = pusher.push([record()], webhook_id="msg_replay")
    again = pusher.push([record()], webhook_id="msg_replay")
    assert first.status_code == 202 and again.status_code == 200
    assert again.get_json()["receipt_id"] == first.get_json()["receipt_id"]
    assert again.get_json()["status"] == "duplicate"
    assert len(inbox_rows(engine, pusher.tenant_id)) == 1


def _unauthorized(response: Any) -> dict[str, Any]:
    assert response.status_code == 401, response.get_json()
    return dict(response.get_json())


def test_bad_stale_and_future_signatures_are_refused(pusher: Pusher, engine: Engine) -> None:
    wrong = credentials._new_secret()
    answers = [
        _unauthorized(pusher.push([record()], secret=wrong)),
        _unauthorized(pusher.push([record()], at=datetime.now(UTC) - timedelta(minutes=6))),
        _unauthorized(pusher.push([record()], at=datetime.now(UTC) + timedelta(minutes=6))),
    ]
    body = json.dumps({"records": [record()]}).encode()
    headers = signed_headers(pusher.issued.secret, body, client_id=pusher.issued.client_id)
    tampered = body.replace(b"Acme", b"Evil")
    answers.append(_unauthorized(pusher.client.post(
        f"/v1/push/{pusher.tenant_id}/records", data=tampered, headers=headers)))
    for malformed in ("v1", "v1,not-base64!", "", "v2,AAAA"):
        answers.append(_unauthorized(pusher.client.post(
            f"/v1/push/{pusher.tenant_id}/records", data=body,
            headers={**headers, "webhook-signature": malformed})))
    assert all(a == answers[0] for a in answers)
    # Within the tolerance, either side, is accepted.
    assert pusher.push([record()], at=datetime.now(UTC) - timedelta(minutes=4)).status_code == 202
    assert len(inbox_rows(engine, pusher.tenant_id)) == 1


def test_rotation_keeps_the_old_secret_until_it_is_retired(pusher: Pusher, engine: Engine) -> None:
    old = pusher.issued.secret
    new = credentials.issue_secret(engine, pusher.tenant_id)
    assert new.client_id == pusher.issued.client_id and new.secret != old
    assert pusher.push([record()], secret=old).status_code == 202
    assert pusher.push([record()], secret=new.secret).status_code == 202
    # A sender mid-rotation signs with both: accepted.
    assert pusher.push([record()], secret=[old, new.secret]).status_code == 202
    assert credentials.retire_old_secrets(engine, pusher.tenant_id) == 1
    _unauthorized(pusher.push([record()], secret=old))
    assert pusher.push([record()], secret=new.secret).status_code == 202
    assert pusher.push([record()], secret=[old, new.secret]).status_code == 202


def test_unknown_tenant_is_indistinguishable(pusher: Pusher, engine: Engine,
                                            make_tenant_id: Callable[[], str]) -> None:
    cases = {
        "unknown tenant": lambda: pusher.push([record()], tenant_id=make_tenant_id()),
        "unknown client": lambda: pusher.push([record()], client_id="pc_nobody"),
        "no client": lambda: pusher.push([record()], client_id=""),
        "bad signature": lambda: pusher.push([record()], secret=credentials._new_secret()),
        "stale": lambda: pusher.push([record()], at=datetime.now(UTC) - timedelta(hours=1)),
    }
    answers: dict[str, Any] = {}
    # The same work in every case: the same statements reach the database (the secrets'
    # query runs even for a tenant or client that does not exist). Timing itself is not
    # asserted here: on a loaded machine it says more about the machine than the code.
    statements: dict[str, list[str]] = {name: [] for name in cases}
    current: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        current.append(statement.split(" FROM ")[0][:40])

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        for name, call in cases.items():
            current.clear()
            response = call()
            statements[name] = list(current)
            answers[name] = (response.status_code, response.get_json(),
                             sorted(k for k, _ in response.headers.items() if k.lower() != "date"))
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
    first = next(iter(answers.values()))
    assert all(answer == first for answer in answers.values()), answers
    assert first[0] == 401
    shapes = {name: len(found) for name, found in statements.items()}
    assert len(set(shapes.values())) == 1 and min(shapes.values()) >= 1, statements
    assert inbox_rows(engine, pusher.tenant_id) == []


def test_tenant_a_credentials_cannot_push_to_b(app: Flask, engine: Engine,
                                               make_tenant_id: Callable[[], str]) -> None:
    a, b = make_tenant_id(), make_tenant_id()
    pusher_a = Pusher(app.test_client(), a, make_push_tenant(engine, a))
    make_push_tenant(engine, b)
    _unauthorized(pusher_a.push([record()], tenant_id=b))
    assert inbox_rows(engine, b) == [] and inbox_rows(engine, a) == []
    # The same webhook-id in two tenants is two batches.
    pusher_b = Pusher(app.test_client(), b, credentials.issue_secret(engine, b))
    assert pusher_a.push([record()], webhook_id="msg_same").status_code == 202
    assert pusher_b.push([record()], webhook_id="msg_same").status_code == 202


@pytest.mark.parametrize(("bad", "expected"), [
    ({"object": "account", "action": "create", "data": {}}, "missing id"),
    ({"object": "widget", "id": "1", "action": "create", "data": {}}, "unknown object 'widget'"),
    ({"object": "account", "id": "1", "action": "upsert", "data": {}}, "unknown action 'upsert'"),
    ({"object": "account", "id": "1", "action": "update", "data": [1]},
     "data must be a JSON object"),
    ({"object": "account", "id": "1", "action": "update"}, "missing data"),
    ({"object": "account", "id": "1", "action": "update", "data": {}, "occurred_at": "yesterday"},
     "not an ISO 8601"),
    ({"object": "account", "id": "1", "action": "update", "data": {},
      "occurred_at": "2026-01-01T10:00:00"}, "no time zone"),
    ({"object": "account", "id": "x" * 65, "action": "create", "data": {}}, "at most 64"),
    ({"object": "account", "id": "1", "action": "create", "data": {}, "dta": {}},
     "unknown key(s) dta"),
    ("not a record", "must be a JSON object"),
])
def test_each_bad_record_is_named_and_nothing_is_stored(
        pusher: Pusher, engine: Engine, bad: Any, expected: str) -> None:
    response = pusher.push([record(), bad, record("account", "A2")])
    assert response.status_code == 400
    answer = response.get_json()
    assert answer["error"] == "invalid_batch" and "nothing of this batch" in answer["message"]
    [error] = answer["errors"]
    assert error["index"] == 1
    assert any(expected in problem for problem in error["problems"]), error
    assert inbox_rows(engine, pusher.tenant_id) == []


@pytest.mark.parametrize(("body", "expected"), [
    (b'{"records": [', "not valid JSON"),
    (b'{"records": {}}', "JSON array of records"),
    (b'{"records": []}', "empty"),
    (b"\xff\xfe", "not UTF-8"),
    (json.dumps({"records": [record("account", str(i)) for i in range(1001)]}).encode(),
     "at most 1000"),
])
def test_a_bad_body_is_a_400(pusher: Pusher, engine: Engine, body: bytes, expected: str) -> None:
    body_text = body.decode("utf-8", "replace").encode()  # signable
    response = pusher.push(None, body=body if body != b"\xff\xfe" else body_text)
    if body == b"\xff\xfe":
        response = pusher.client.post(
            f"/v1/push/{pusher.tenant_id}/records", data=body,
            headers=signed_headers(pusher.issued.secret, body_text,
                                   client_id=pusher.issued.client_id))
        assert response.status_code == 401  # a body that is not text cannot be signed
        return
    assert response.status_code == 400, response.get_json()
    assert expected in response.get_json()["message"]
    assert inbox_rows(engine, pusher.tenant_id) == []


def test_a_full_batch_of_1000_is_accepted(pusher: Pusher) -> None:
    """Past the concierge's 256 KB form limit: the push API has its own (5 MB)."""
    records = [record("account", str(i), name="Acme", website="x" * 300) for i in range(1000)]
    body = json.dumps({"records": records}).encode()
    assert len(body) > 256 * 1024
    response = pusher.push(None, body=body)
    assert response.status_code == 202 and response.get_json()["records"] == 1000


def test_over_the_body_limit_is_413(database_url: str, engine: Engine, tenant_id: str) -> None:
    app = make_app(database_url, PUSH_MAX_BODY_BYTES=2000)
    pusher = Pusher(app.test_client(), tenant_id, make_push_tenant(engine, tenant_id))
    response = pusher.push([record("account", str(i)) for i in range(100)])
    assert response.status_code == 413
    assert response.get_json()["error"] == "payload_too_large"
    assert inbox_rows(engine, tenant_id) == []


def test_429_with_retry_after_per_tenant(database_url: str, engine: Engine,
                                        make_tenant_id: Callable[[], str]) -> None:
    app = make_app(database_url, PUSH_RATE_LIMIT="3 per minute")
    a, b = make_tenant_id(), make_tenant_id()
    pusher_a = Pusher(app.test_client(), a, make_push_tenant(engine, a))
    pusher_b = Pusher(app.test_client(), b, make_push_tenant(engine, b))
    for _ in range(3):
        assert pusher_a.push([record()]).status_code == 202
    limited = pusher_a.push([record()])
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 61
    assert limited.get_json()["error"] == "rate_limited"
    assert pusher_b.push([record()]).status_code == 202  # another tenant's budget
    assert len(inbox_rows(engine, a)) == 3


def test_json_only(pusher: Pusher) -> None:
    body = json.dumps([record()]).encode()
    headers = signed_headers(pusher.issued.secret, body, client_id=pusher.issued.client_id)
    headers["Content-Type"] = "text/plain"
    response = pusher.client.post(f"/v1/push/{pusher.tenant_id}/records", data=body,
                                  headers=headers)
    assert response.status_code == 415


def test_secrets_never_in_logs_answers_or_storage(
        pusher: Pusher, engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = pusher.issued.secret
    assert secret.startswith("whsec_")
    assert secret not in repr(pusher.issued)
    rotated = credentials.issue_secret(engine, pusher.tenant_id)
    answers = [pusher.push([record()]), pusher.push([record()], secret=credentials._new_secret()),
               pusher.push([{"object": "account"}])]
    texts = [a.get_data(as_text=True) for a in answers]
    with engine.connect() as conn:
        stored = [str(dict(r)) for r in conn.execute(sa.select(push_inbox)).mappings()]
        stored += [str(dict(r)) for r in conn.execute(sa.select(push_credential)).mappings()]
    for text in [*texts, *stored, caplog.text]:
        for s in (secret, rotated.secret, secret.removeprefix("whsec_")):
            assert s not in text
    assert all("signature" not in key for row in inbox_rows(engine, pusher.tenant_id)
               for key in row["headers"])


def test_a_sealed_secret_copied_to_another_tenant_does_not_open(
        engine: Engine, make_tenant_id: Callable[[], str]) -> None:
    a, b = make_tenant_id(), make_tenant_id()
    issued_a = make_push_tenant(engine, a)
    issued_b = make_push_tenant(engine, b)
    with engine.begin() as conn:
        token_a = conn.execute(sa.select(push_credential.c.secret_ciphertext)
                               .where(push_credential.c.id == issued_a.credential_id)).scalar_one()
        conn.execute(sa.update(push_credential)
                     .where(push_credential.c.id == issued_b.credential_id)
                     .values(secret_ciphertext=token_a))
    assert credentials.live_secrets(engine, b, issued_b.client_id) == []
    assert credentials.live_secrets(engine, a, issued_a.client_id) == [issued_a.secret]


def test_concurrent_pushes_and_replays_are_stored_once_each(engine: Engine, tenant_id: str) -> None:
    """The unique key decides, not a check-then-insert: 8 threads send 10 batches each,
    every one of them twice."""
    from concurrent.futures import ThreadPoolExecutor

    from accrue.push import inbox

    make_push_tenant(engine, tenant_id)
    body = json.dumps([record()]).encode()

    def send(n: int) -> tuple[int, bool]:
        receipt = inbox.store(engine, tenant_id, f"msg_{n % 80}", body, {}, 1)
        return receipt.id, receipt.duplicate

    with ThreadPoolExecutor(8) as pool:
        receipts = list(pool.map(send, range(160)))
    rows = inbox_rows(engine, tenant_id)
    assert len(rows) == 80
    assert sum(not duplicate for _, duplicate in receipts) == 80
    by_webhook = {row["webhook_id"]: row["id"] for row in rows}
    for n, (receipt_id, _) in enumerate(receipts):
        assert by_webhook[f"msg_{n % 80}"] == receipt_id


def test_a_push_waiting_for_its_tenants_turn_has_drawn_no_id(
        engine: Engine, make_tenant_id: Callable[[], str]) -> None:
    """Ids become visible in order per tenant: the id is drawn only once the tenant's turn
    (PostgreSQL: an advisory lock in the INSERT) is held, and held to the commit; another
    tenant does not wait."""
    import threading

    from accrue.push import inbox

    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: there is no turn to wait for")
    tenant_id, other = make_tenant_id(), make_tenant_id()
    make_push_tenant(engine, tenant_id)
    make_push_tenant(engine, other)
    first = inbox.store(engine, tenant_id, "msg_first", b"[]", {}, 0).id

    def last_drawn() -> int:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT last_value FROM push_inbox_id_seq"))
                       .scalar_one())

    with engine.connect() as holder, holder.begin():  # another push of the tenant, mid-way
        holder.execute(sa.text("SELECT pg_advisory_xact_lock(:c, hashtext(:t))"),
                       {"c": inbox.PUSH_LOCK_CLASS, "t": tenant_id})
        drawn = last_drawn()
        waiting: dict[str, inbox.Receipt] = {}
        thread = threading.Thread(target=lambda: waiting.setdefault(
            "receipt", inbox.store(engine, tenant_id, "msg_waits", b"[]", {}, 0)))
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive(), "the push did not wait for its tenant's turn"
        assert last_drawn() == drawn, "an id was drawn before the turn"
        elsewhere = inbox.store(engine, other, "msg_elsewhere", b"[]", {}, 0)
        assert not elsewhere.duplicate
    thread.join(10)
    assert waiting["receipt"].id > max(first, elsewhere.id)


def test_fields_outside_the_common_model_are_named_in_the_receipt(pusher: Pusher) -> None:
    response = pusher.push([record("opportunity", "O1", name="D", c2crm_region="EMEA"),
                            record("opportunity", "O2", name="E", zeta=1),
                            record("account", "A1", name="Acme")])
    answer = response.get_json()
    assert response.status_code == 202
    assert answer["unmapped_fields"] == {"opportunity": ["c2crm_region", "zeta"]}
    assert "raw" in answer["message"]
