"""The push API in the concierge (issue 13, F8): the "Push API" choice in Select CRM, the
Push setup page (URL, client id, the secret shown once, a curl example whose signature
works against the real endpoint, the indicator that turns green on the first push), the
Push API page of the Integration settings (rotation, retiring, recent pushes), and who
may see them. Through Flask's test client with CSRF on, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import html
import io
import json
import logging
import re
import shlex
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from standardwebhooks.webhooks import Webhook

from accrue import tenants
from accrue.push import PUSH_CRM_TYPE, credentials
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    audit_actions,
    concierge_db_url_fixture,
    location,
    make_app,
)
from connectors.base import Upsert
from onboarding_app import store
from onboarding_app.security import hash_password

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]{20,}")


def block(page: str, block_id: str) -> str:
    """The text of a copy block (<pre id=...><code>...</code></pre>) as a person copies it."""
    match = re.search(rf'<pre id="{block_id}"[^>]*><code>(.*?)</code></pre>', page, re.S)
    assert match, f"no {block_id} on the page"
    return html.unescape(match.group(1))


def parse_curl(command: str) -> tuple[str, dict[str, str], bytes]:
    """URL, headers and body of the page's curl example, as a shell would run it."""
    words = shlex.split(command.replace("\\\n", " "))
    url = words[words.index("POST") + 1]
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    return url, headers, words[words.index("--data-binary") + 1].encode()


class Recorder:
    """Every response body the admin's browser received (the secret may be in one only)."""

    def __init__(self, admin: Admin) -> None:
        self.bodies: list[str] = []
        self.responses: list[Any] = []
        client = admin.client
        original = client.open

        def open_and_record(*args: Any, **kwargs: Any) -> Any:
            response = original(*args, **kwargs)
            self.bodies.append(response.get_data(as_text=True))
            self.responses.append(response)
            return response

        client.open = open_and_record  # type: ignore[method-assign]

    def holding(self, text: str) -> int:
        return sum(text in body for body in self.bodies)


@pytest.fixture
def app(database_url: str) -> Flask:
    return make_app(database_url)


@pytest.fixture
def admin(app: Flask) -> Admin:
    person = Admin(app.test_client())
    person.signup()
    person.start()
    return person


def engine_of(app: Flask) -> sa.Engine:
    return app.extensions["accrue_warehouse"]


def choose_push(admin: Admin) -> str:
    """Select CRM → Push API; the first Push setup page (the one with the secret)."""
    response = admin.choose_crm("push")
    assert response.status_code == 302 and location(response) == "/onboarding/push"
    page = admin.client.get("/onboarding/push")
    assert page.status_code == 200
    return page.get_data(as_text=True)


def finish_wizard(admin: Admin) -> None:
    assert location(admin.post("/onboarding/push", {"action": "continue"})) == "/onboarding/review"
    review = admin.client.get("/onboarding/review").get_data(as_text=True)
    assert "what your system sends through the Push API" in review
    assert "Count again" not in review and "How often should Accrue sync?" not in review
    assert location(admin.review()) == "/onboarding/terms"
    assert location(admin.terms()) == "/onboarding/complete"
    complete = admin.client.get("/onboarding/complete").get_data(as_text=True)
    assert "<dd>Push API</dd>" in complete and "What your system pushes" in complete
    assert location(admin.finish()) == "/status"


def push_curl(admin: Admin, curl: str) -> Any:
    url, headers, body = parse_curl(curl)
    return admin.client.post(url, data=body, headers=headers)


def test_select_crm_offers_the_push_api_for_any_crm(app: Flask, admin: Admin) -> None:
    page = admin.client.get("/onboarding/crm").get_data(as_text=True)
    assert 'value="push"' in page and "Push API" in page and "C2CRM" in page
    assert "any CRM no connector covers" in page
    assert page.index('value="salesforce"') < page.index('value="push"')  # CRMs first
    first = choose_push(admin)
    assert tenants.require_tenant(engine_of(app), admin.tenant_id).crm_type == PUSH_CRM_TYPE
    assert SECRET.search(first)
    # Provide Details is the Push setup page for a push tenant (no CRM sign-in).
    assert location(admin.client.get("/onboarding/details")) == "/onboarding/push"
    assert location(admin.client.get("/onboarding/")) == "/onboarding/push"
    # Back to a CRM: its sign-in page again, and the tenant is a CRM tenant.
    assert location(admin.choose_crm("salesforce")) == "/onboarding/details"
    assert tenants.require_tenant(engine_of(app), admin.tenant_id).crm_type == "salesforce"
    assert location(admin.client.get("/onboarding/push")) == "/onboarding/details"
    # A CRM tenant's push secrets sign nothing; back to the push API, they work again.
    curl = block(first, "push-curl")
    assert push_curl(admin, curl).status_code == 401
    assert location(admin.choose_crm("push")) == "/onboarding/push"
    assert not SECRET.search(admin.client.get("/onboarding/push").get_data(as_text=True))
    assert push_curl(admin, curl).status_code == 202


def test_the_push_wizard_end_to_end_the_first_push_turns_it_green(
        app: Flask, admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    recorder = Recorder(admin)
    first = choose_push(admin)
    secret = block(first, "push-secret")
    assert SECRET.fullmatch(secret)
    assert "no-store" in recorder.responses[-1].headers["Cache-Control"]  # no cached copy
    assert "store it now, it will not be shown again" in first
    client_id = credentials.list_credentials(engine_of(app), admin.tenant_id)[0].client_id
    assert client_id in first and f"/v1/push/{admin.tenant_id}/records" in first
    assert "Waiting for your first push" in first
    waiting = admin.client.get("/onboarding/push/status.json").get_json()
    assert waiting == {"received": False, "batches": 0, "records": 0, "last_received_at": None}

    # The curl example is signed for its body with the new secret, and the endpoint takes it.
    curl = block(first, "push-curl")
    url, headers, body = parse_curl(curl)
    assert url == f"http://concierge.test/v1/push/{admin.tenant_id}/records"
    assert headers["Accrue-Client-Id"] == client_id
    Webhook(secret).verify(body, headers)  # raises if the signature does not verify
    answer = push_curl(admin, curl)
    assert answer.status_code == 202, answer.get_json()
    assert answer.get_json()["records"] == 1

    arrived = admin.client.get("/onboarding/push/status.json").get_json()
    assert arrived["received"] is True and arrived["records"] == 1
    again = admin.client.get("/onboarding/push").get_data(as_text=True)
    assert 'class="result push-indicator ok"' in again and "Pushes are arriving" in again
    assert secret not in again and "push-secret" not in again
    assert "Generate a new secret" in again and "your-stored-secret" in again

    finish_wizard(admin)
    assert tenants.require_tenant(engine_of(app), admin.tenant_id).status == "active"
    status_page = admin.client.get("/status").get_data(as_text=True)
    assert "Push API is connected" in status_page
    # Not the CRM's schedule: a push tenant's records are applied when they arrive.
    assert "within a minute of their arrival" in status_page and "syncs every" not in status_page
    settings = admin.client.get("/integration", follow_redirects=True).get_data(as_text=True)
    assert "Fed by the push API" in settings and client_id in settings
    assert re.search(r'<td class="num">1</td>\s*<td>Accepted', settings)
    assert "No pushed record is in quarantine" in settings
    Warehouse(engine_of(app)).apply(admin.tenant_id, "opportunity", [
        Upsert("D-bad", datetime.now(UTC), {"amount": "twelve"}, {"amount": "twelve"})])
    quarantined = admin.client.get("/integration/push").get_data(as_text=True)
    assert "1 quarantined" in quarantined

    # The secret was in exactly one answer, and nowhere in clear in the logs or the database.
    assert recorder.holding(secret) == 1
    assert secret not in caplog.text
    with engine_of(app).connect() as conn:
        for table in ("push_credential", "push_inbox", "audit_event", "onboarding_state"):
            dump = repr(conn.execute(sa.text(f"SELECT * FROM {table}")).all())
            assert secret not in dump, table
    assert credentials.live_secrets(engine_of(app), admin.tenant_id, client_id) == [secret]


def test_rotation_shows_the_new_secret_once_and_retiring_ends_the_old_one(
        app: Flask, admin: Admin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    old_secret = block(choose_push(admin), "push-secret")
    finish_wizard(admin)
    recorder = Recorder(admin)
    assert location(admin.client.get("/integration")) == "/integration/push"
    page = admin.client.get("/integration/push").get_data(as_text=True)
    assert not SECRET.search(page) and "Retire old secrets" in page

    rotated = admin.post("/integration/push/rotate")
    assert rotated.status_code == 200
    rotated_page = rotated.get_data(as_text=True)
    new_secret = block(rotated_page, "push-secret")
    assert new_secret != old_secret and "1 older secret(s) still work" in rotated_page
    # Both sign, while the sender switches.
    assert push_curl(admin, block(rotated_page, "push-curl")).status_code == 202
    old_curl = _signed_example(app, admin.tenant_id, old_secret)
    assert push_curl(admin, old_curl).status_code == 202

    retired = admin.post("/integration/push/retire")
    assert location(retired) == "/integration/push"
    after = admin.client.get("/integration/push").get_data(as_text=True)
    assert "Retired" in after and new_secret not in after
    assert push_curl(admin, _signed_example(app, admin.tenant_id, old_secret)).status_code == 401
    assert push_curl(admin, _signed_example(app, admin.tenant_id, new_secret)).status_code == 202
    assert recorder.holding(new_secret) == 1
    assert new_secret not in caplog.text and old_secret not in caplog.text
    listed = admin.client.get("/integration/push").get_data(as_text=True)
    assert len(re.findall(r'<td class="num">1</td>\s*<td>Accepted', listed)) == 3  # not the 401
    nothing = admin.post("/integration/push/retire", follow_redirects=True)
    assert "nothing to retire" in nothing.get_data(as_text=True)


def _signed_example(app: Flask, tenant_id: str, secret: str) -> str:
    from onboarding_app.push import guide

    with app.test_request_context():
        return guide.signed_curl(guide.push_url(tenant_id),
                                 guide.client_id(tenant_id) or "", secret)


def _member(app: Flask, tenant_id: str, role: str) -> Admin:
    person = Admin(app.test_client())
    store.create_member(engine_of(app), tenant_id=tenant_id, email=person.email,
                        full_name=f"A {role}", password_hash=hash_password(person.password),
                        role=role, crm_user_id=f"u-{person.email}")
    assert person.login().status_code == 302
    return person


def test_only_the_tenants_admin_sees_or_rotates(app: Flask, admin: Admin) -> None:
    choose_push(admin)
    setup_pages = ("/onboarding/push", "/onboarding/push/status.json")
    for path in setup_pages:  # logged out: the login page, nothing else
        assert "/auth/login" in app.test_client().get(path).headers["Location"]
    for role in ("seller", "manager"):
        member = _member(app, admin.tenant_id, role)
        for path in setup_pages:
            assert member.client.get(path).status_code == 403, (role, path)
        for path in ("/onboarding/push/secret",):
            assert member.post(path).status_code == 403, (role, path)
    finish_wizard(admin)
    before = credentials.list_credentials(engine_of(app), admin.tenant_id)
    client_id = before[0].client_id
    for role in ("seller", "manager"):
        member = _member(app, admin.tenant_id, role)
        assert member.client.get("/integration/push").status_code == 403
        assert member.post("/integration/push/rotate").status_code == 403
        assert member.post("/integration/push/retire").status_code == 403

    # Another tenant's admin: their own (CRM) tenant has no push page, and nothing of ours.
    other = Admin(app.test_client())
    other.signup(company="Other Corp")
    other.start()
    other.choose_crm("salesforce")
    assert location(other.client.get("/onboarding/push")) == "/onboarding/details"
    json_answer = other.client.get("/onboarding/push/status.json")
    assert json_answer.status_code in (200, 302) and b"true" not in json_answer.data
    # ... and another push tenant sees its own client id, never ours.
    third = Admin(app.test_client())
    third.signup(company="Third Corp")
    third.start()
    page = choose_push(third)
    assert client_id not in page
    assert credentials.list_credentials(engine_of(app), admin.tenant_id) == before


def test_a_crm_tenant_has_no_push_page(app: Flask, admin: Admin) -> None:
    admin.choose_crm("salesforce")
    with engine_of(app).begin() as conn:  # setup finished, as after the CRM wizard
        conn.execute(sa.text("UPDATE onboarding_state SET completed_at = :t WHERE tenant_id = :i"),
                     {"t": datetime.now(UTC), "i": admin.tenant_id})
    assert admin.client.get("/integration/push").status_code == 404
    assert admin.post("/integration/push/rotate").status_code == 404
    assert credentials.list_credentials(engine_of(app), admin.tenant_id) == []


@pytest.fixture
def example(app: Flask, admin: Admin) -> Iterator[tuple[str, str]]:
    """(the secret, the page after it was shown) for the snippet tests."""
    secret = block(choose_push(admin), "push-secret")
    yield secret, admin.client.get("/onboarding/push").get_data(as_text=True)


@pytest.mark.skipif(not (shutil.which("openssl") and shutil.which("bash")),
                    reason="the shell snippet needs bash and openssl")
def test_the_shell_snippet_signs_like_standard_webhooks(
        admin: Admin, example: tuple[str, str]) -> None:
    secret, page = example
    snippet = block(page, "push-shell")
    assert "whsec_...your-stored-secret..." in snippet and secret not in snippet
    signing = snippet.split("\ncurl ")[0].replace("whsec_...your-stored-secret...", secret)
    out = subprocess.run(["bash", "-c", signing + '\nprintf "%s\\n%s\\n%s" "$ID" "$TS" "$SIG"'],
                         capture_output=True, text=True, check=True, timeout=20).stdout
    webhook_id, stamp, signature = out.split("\n")
    body = re.search(r"BODY='(.*)'", snippet).group(1).encode()  # type: ignore[union-attr]
    Webhook(secret).verify(body, {"webhook-id": webhook_id, "webhook-timestamp": stamp,
                                  "webhook-signature": signature})
    curl = "curl " + snippet.split("\ncurl ")[1]
    filled = (curl.replace('"$BODY"', shlex.quote(body.decode())).replace("$ID", webhook_id)
              .replace("$TS", stamp).replace("$SIG", signature))
    assert push_curl(admin, filled).status_code == 202


def test_the_python_snippet_sends_a_signed_push(
        admin: Admin, example: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    secret, page = example
    snippet = block(page, "push-python").replace("whsec_...your-stored-secret...", secret)
    answers: list[Any] = []

    def urlopen(request: urllib.request.Request) -> Any:
        response = admin.client.post(request.full_url, data=request.data,
                                     headers=dict(request.header_items()))
        answers.append(response)

        class Answer(io.BytesIO):
            status = response.status_code

        return Answer(response.data)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    exec(compile(snippet, "push-python", "exec"), {})  # noqa: S102 - the page's own snippet
    assert [a.status_code for a in answers] == [202], [a.get_json() for a in answers]
    assert json.loads(answers[0].data)["records"] == 1


def test_the_schema_page_shows_fields_maps_them_and_accepts_drift(
        app: Flask, admin: Admin) -> None:
    from accrue.push import schema

    choose_push(admin)
    finish_wizard(admin)
    engine, tenant_id = engine_of(app), admin.tenant_id
    empty = admin.client.get("/integration/push/schema").get_data(as_text=True)
    assert "Nothing pushed has been applied yet" in empty
    first = [{"object": "opportunity", "id": "D1", "action": "create",
              "data": {"deal_name": "Renewal", "amount": 1200.5, "region": "EMEA"}}]
    schema.observe(engine, tenant_id, "opportunity", [(datetime.now(UTC), first)])
    page = admin.client.get("/integration/push/schema").get_data(as_text=True)
    assert "Opportunities (deals)" in page and "<code>deal_name</code>" in page
    assert "<code>Renewal</code>" in page and "<td>number</td>" in page
    stored = schema.load(engine, tenant_id)["opportunity"]
    assert stored.mapping["amount"] == "amount"
    # The suggested column is the one selected.
    assert re.search(r'name="map:amount"[^>]*>.*?<option value="amount" selected>amount '
                     r'\(suggested\)', page, re.S)

    later = [{"object": "opportunity", "id": "D2", "action": "update",
              "data": {"deal_name": "Upsell", "amount": "1,200", "stage": "Won"}}]
    schema.observe(engine, tenant_id, "opportunity", [(datetime.now(UTC), later)])
    drifted = admin.client.get("/integration/push/schema").get_data(as_text=True)
    assert "change(s) to review" in drifted
    for words in ("Added", "Dropped", "Type changed"):
        assert words in drifted, words
    accepted = admin.post("/integration/push/schema/opportunity/accept")
    assert location(accepted) == "/integration/push/schema"
    assert schema.load(engine, tenant_id)["opportunity"].drift == ()
    assert "change(s) to review" not in admin.client.get("/integration/push/schema").get_data(
        as_text=True)

    saved = admin.post("/integration/push/schema/opportunity/mapping",
                       {"map:deal_name": "name", "map:amount": ""})
    assert location(saved) == "/integration/push/schema"
    mapping = schema.load(engine, tenant_id)["opportunity"].mapping
    assert mapping["deal_name"] == "name" and mapping["amount"] is None
    refused = admin.post("/integration/push/schema/opportunity/mapping",
                         {"map:deal_name": "name", "map:stage": "name"})
    assert refused.status_code == 400 and "fed by more than one field" in refused.get_data(
        as_text=True)
    assert schema.load(engine, tenant_id)["opportunity"].mapping["stage"] != "name"
    assert admin.post("/integration/push/schema/deal/accept").status_code == 404

    seller = _member(app, tenant_id, "seller")
    assert seller.client.get("/integration/push/schema").status_code == 403
    assert seller.post("/integration/push/schema/opportunity/accept").status_code == 403


def test_a_lost_secret_is_replaced_in_the_wizard_and_every_step_is_audited(
        app: Flask, admin: Admin) -> None:
    first = block(choose_push(admin), "push-secret")
    again = admin.post("/onboarding/push/secret")
    assert again.status_code == 200
    second = block(again.get_data(as_text=True), "push-secret")
    assert second != first
    client_id = credentials.list_credentials(engine_of(app), admin.tenant_id)[0].client_id
    live = credentials.live_secrets(engine_of(app), admin.tenant_id, client_id)
    assert sorted(live) == sorted([first, second])  # the old one works until retired
    finish_wizard(admin)
    admin.post("/integration/push/rotate")
    admin.post("/integration/push/retire")
    actions = [a for a, _ in audit_actions(engine_of(app), admin.tenant_id)
               if a.startswith("push.")]
    assert actions == ["push.secret_issued", "push.secret_rotated", "push.secret_rotated",
                       "push.secrets_retired"]
    with engine_of(app).connect() as conn:
        details = repr(conn.execute(sa.text("SELECT detail FROM audit_event")).all())
    assert first not in details and second not in details
