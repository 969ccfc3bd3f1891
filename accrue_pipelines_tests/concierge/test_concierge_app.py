"""The concierge wizard through Flask's test client: sign-up to "Finish and Close".

CSRF protection stays on in every test (tokens are read from the pages, as a
browser would). Fixtures and the `Admin` driver here are reused by the other
test_concierge_* modules.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine

from accrue import db, tenants
from accrue.schema import audit_event, onboarding_state
from connectors.salesforce.sandbox import RunningSandbox
from onboarding_app import create_app
from onboarding_app.notify import Email, email_composed

CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
PASSWORD = "correct horse battery staple"


CONFIRM_LINK = re.compile(r"https?://\S+?(/auth/confirm/[A-Za-z0-9_-]+)")


@contextlib.contextmanager
def captured_mail(app: Flask) -> Iterator[list[Email]]:
    """Every e-mail the app composes meanwhile (notify.email_composed), sent or not."""
    mails: list[Email] = []

    def record(_sender: Flask, message: Email, **_: Any) -> None:
        mails.append(message)

    with email_composed.connected_to(record, app):
        yield mails


def confirm_path(mails: list[Email], email: str) -> str:
    """The path of the sign-up confirmation link mailed to `email`."""
    bodies = [m.body for m in mails if m.to == email]
    found = [m.group(1) for body in bodies if (m := CONFIRM_LINK.search(body))]
    assert len(found) == 1, f"expected one confirmation link for {email} in {bodies}"
    return found[0]


@pytest.fixture(scope="session", name="concierge_db_url")
def concierge_db_url_fixture(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite database for the app tests that need only one backend."""
    url = f"sqlite:///{tmp_path_factory.mktemp('concierge') / 'warehouse.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    return url


def make_app(database_url: str, sandbox_url: str | None = None, **config: Any) -> Flask:
    settings: dict[str, Any] = {
        "TESTING": True, "DATABASE_URL": database_url, "ENV_NAME": "development",
        "SANDBOX_URLS": {"salesforce": sandbox_url} if sandbox_url else {},
        "SERVER_NAME": "concierge.test",
    }
    settings.update(config)
    return create_app(settings)


@pytest.fixture(name="app")
def app_fixture(concierge_db_url: str, sf_sandbox: RunningSandbox) -> Flask:
    return make_app(concierge_db_url, sf_sandbox.url)


class Admin:
    """Drives the concierge like a browser: reads CSRF tokens from pages, posts forms."""

    def __init__(self, client: FlaskClient, email: str | None = None) -> None:
        self.client = client
        self.email = email or f"admin-{uuid.uuid4().hex[:10]}@example.com"
        self.password = PASSWORD

    def token(self, path: str = "/auth/login") -> str:
        match = CSRF.search(self.client.get(path).get_data(as_text=True))
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        form = {"csrf_token": self.token(), **(data or {})}
        return self.client.post(path, data=form, **kwargs)

    def request_signup(self, company: str = "Acme Corp") -> tuple[Any, list[Email]]:
        """Submit the sign-up form; the response and the e-mails it composed."""
        with captured_mail(self.client.application) as mails:
            response = self.post("/auth/signup", {"company": company, "full_name": "Ana Admin",
                                                  "email": self.email,
                                                  "password": self.password})
        return response, mails

    def signup(self, company: str = "Acme Corp") -> Any:
        """Sign up as a person does: the form, the e-mailed link, "Confirm and continue"."""
        response, mails = self.request_signup(company)
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        assert response.headers["Location"].endswith("/auth/signup/sent")
        response = self.post(confirm_path(mails, self.email))
        assert response.status_code == 302, response.get_data(as_text=True)[:2000]
        return response

    def login(self, password: str | None = None) -> Any:
        return self.post("/auth/login", {"email": self.email,
                                         "password": password or self.password})

    def logout(self) -> Any:
        return self.post("/auth/logout")

    @property
    def tenant_id(self) -> str:
        with self.client.application.app_context():
            engine = self.client.application.extensions["accrue_warehouse"]
            with engine.connect() as conn:
                return conn.execute(sa.text(
                    "SELECT tenant_id FROM app_user WHERE email = :e"), {"e": self.email}
                ).scalar_one()

    # -- the wizard ----------------------------------------------------------------

    def start(self) -> Any:
        return self.post("/onboarding/start")

    def choose_crm(self, crm: str = "salesforce", action: str = "continue") -> Any:
        return self.post("/onboarding/crm", {"crm": crm, "action": action})

    def details(self, sandbox: RunningSandbox | None = None, action: str = "continue",
                headers: dict[str, str] | None = None, **fields: str) -> Any:
        data = {"auth_method": "password", "environment": "production", "my_domain": "",
                "action": action}
        if sandbox is not None:
            data.update(username=sandbox.username, password=sandbox.password,
                        security_token=sandbox.security_token)
        data.update(fields)
        return self.post("/onboarding/details", data, headers=headers or {})

    def oauth_connect(self, sandbox: RunningSandbox, decision: str = "allow") -> Any:
        """Connect with Salesforce: consent in the sandbox, back to the callback."""
        callback = self.authorize(sandbox, decision)
        return self.client.get(callback)

    def authorize(self, sandbox: RunningSandbox, decision: str = "allow",
                  start_path: str = "/onboarding/details/oauth") -> str:
        """Start OAuth and click Allow/Deny on the sandbox page; the callback path + query."""
        start = self.post(start_path, {
            "auth_method": "oauth", "environment": "production", "my_domain": ""})
        assert start.status_code == 302, start.get_data(as_text=True)[:1000]
        authorize_url = start.headers["Location"]
        assert authorize_url.startswith(sandbox.url + "/services/oauth2/authorize?")
        page = requests.get(authorize_url, timeout=5)
        assert page.status_code == 200 and "Allow Access?" in page.text
        fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', page.text))
        fields = {k: v.replace("&amp;", "&") for k, v in fields.items()}
        fields["decision"] = decision
        answer = requests.post(f"{sandbox.url}/services/oauth2/authorize", data=fields,
                               allow_redirects=False, timeout=5)
        assert answer.status_code == 302
        target = urlsplit(answer.headers["Location"])
        return f"{target.path}?{target.query}"

    def review(self, frequency: int = 15, action: str = "continue", **imports: bool) -> Any:
        data: dict[str, Any] = {"frequency": str(frequency), "action": action}
        data.update({k: "y" for k, v in imports.items() if v})
        return self.post("/onboarding/review", data)

    def terms(self, agree: bool = True, action: str = "continue") -> Any:
        data: dict[str, Any] = {"action": action}
        if agree:
            data["agree"] = "y"
        return self.post("/onboarding/terms", data)

    def finish(self) -> Any:
        return self.post("/onboarding/finish")


def location(response: Any) -> str:
    return urlsplit(response.headers.get("Location", "")).path


def query(response: Any) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(response.headers.get("Location", "")).query))


@pytest.fixture(name="admin")
def admin_fixture(app: Flask) -> Admin:
    return Admin(app.test_client())


def audit_actions(engine: Engine, tenant_id: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(
            sa.select(audit_event.c.action, audit_event.c.outcome)
            .where(audit_event.c.tenant_id == tenant_id).order_by(audit_event.c.id))]


# -- tests ------------------------------------------------------------------------------


def test_full_flow_with_legacy_credentials_on_both_backends(
    database_url: str, sf_sandbox: RunningSandbox
) -> None:
    app = make_app(database_url, sf_sandbox.url)
    admin = Admin(app.test_client())
    admin.signup()
    engine = app.extensions["accrue_warehouse"]
    tenant = tenants.require_tenant(engine, admin.tenant_id)
    assert tenant.status == "pending"

    home = admin.client.get("/home").get_data(as_text=True)
    assert 'id="concierge"' in home and "Start Now" in home  # U1 pop-up after sign-up
    assert location(admin.start()) == "/onboarding/crm"
    crm_page = admin.client.get("/onboarding/crm").get_data(as_text=True)
    for name in ("Salesforce", "NetSuite", "HubSpot", "Close", "SugarCRM",
                 "Your CRM is not listed", "Push API"):
        assert name in crm_page
    assert location(admin.choose_crm()) == "/onboarding/details"
    assert location(admin.details(sf_sandbox)) == "/onboarding/review"

    review = admin.client.get("/onboarding/review").get_data(as_text=True)
    counts = sf_sandbox.sandbox.counts()
    assert "Opportunities (deals)" in review and "Activities" in review
    assert f">{counts['Opportunity']['live']:,}<" in review
    for minutes in ("5", "15", "30", "60", "360", "1440"):
        assert f'value="{minutes}"' in review
    assert location(admin.review(frequency=15, activities=True)) == "/onboarding/terms"
    assert location(admin.terms()) == "/onboarding/complete"
    assert "Finish and Close" in admin.client.get("/onboarding/complete").get_data(as_text=True)
    assert location(admin.finish()) == "/status"

    tenant = tenants.require_tenant(engine, admin.tenant_id)
    assert (tenant.status, tenant.sync_frequency_minutes) == ("active", 15)
    with engine.connect() as conn:
        state = conn.execute(sa.select(onboarding_state).where(
            onboarding_state.c.tenant_id == admin.tenant_id)).mappings().one()
    assert state["step"] == "complete" and state["completed_at"] is not None
    assert state["terms_version"] == app.config["TERMS_VERSION"]
    assert state["terms_agreed_at"] is not None and state["started_at"] is not None
    assert state["data"]["review"]["imports"] == {"activities": True}
    assert tenant.optional_objects == ("activity",)  # what the syncs obey
    actions = audit_actions(engine, admin.tenant_id)
    for expected in [("credentials.saved", "ok"), ("connection.tested", "ok"),
                     ("terms.agreed", "ok"), ("onboarding.completed", "ok")]:
        assert expected in actions
    # After completion the wizard is closed and the status page takes over.
    assert location(admin.client.get("/onboarding/crm")) == "/status"
    status = admin.client.get("/status").get_data(as_text=True)
    assert "First data" in status and "First recommendations" in status


def test_save_and_continue_later_resumes_at_the_saved_step_with_fields_filled(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()
    saved = admin.details(sf_sandbox, action="save")
    assert location(saved) == "/home"
    admin.logout()
    assert location(admin.client.get("/home")) == "/auth/login"

    assert location(admin.login()) == "/onboarding/details"  # U5: lands on the saved step
    page = admin.client.get("/onboarding/details").get_data(as_text=True)
    # U1: the login's pop-up is on that page, as "welcome back", and only once.
    assert 'id="concierge"' in page and "Welcome back — continue where you left off" in page
    assert "Provide Details</strong>" in page
    assert f'value="{sf_sandbox.username}"' in page  # non-secret field filled in
    assert page.count('class="saved-badge">Saved<') == 2  # password and token: "saved"
    assert sf_sandbox.password not in page and sf_sandbox.security_token not in page
    again = admin.client.get("/onboarding/details").get_data(as_text=True)
    assert 'id="concierge"' not in again
    assert location(admin.client.get("/onboarding/")) == "/onboarding/details"
    home = admin.client.get("/home").get_data(as_text=True)
    assert "Continue setup" in home and 'id="concierge"' not in home
    # Blank secrets keep the saved ones: continuing without retyping them works.
    kept = admin.details(None, username=sf_sandbox.username, password="", security_token="")
    assert location(kept) == "/onboarding/review"


def test_each_step_is_saved_in_the_database_not_the_cookie(app: Flask, admin: Admin,
                                                           sf_sandbox: RunningSandbox) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm(action="save")
    engine = app.extensions["accrue_warehouse"]
    wizard = _wizard_row(engine, admin.tenant_id)
    assert (wizard["step"], wizard["data"]["crm"]) == ("crm", {"key": "salesforce"})
    admin.choose_crm()
    admin.details(sf_sandbox)
    admin.review(frequency=360, activities=True, action="save")
    wizard = _wizard_row(engine, admin.tenant_id)
    assert wizard["step"] == "review"
    assert wizard["data"]["review"]["frequency"] == 360
    assert wizard["data"]["review"]["imports"]["activities"] is True
    assert location(admin.client.get("/onboarding/terms")) == "/onboarding/review"
    admin.review(frequency=360, activities=True)
    admin.terms(agree=True, action="save")
    wizard = _wizard_row(engine, admin.tenant_id)
    assert wizard["step"] == "terms" and wizard["terms_agreed_at"] is not None
    cookie = admin.client.get_cookie(app.config["SESSION_COOKIE_NAME"], domain="concierge.test")
    assert cookie is not None and "review" not in cookie.value and "crm" not in cookie.value


def test_login_lands_on_the_saved_step_at_every_login_until_complete(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    admin.signup()
    admin.start()
    admin.logout()
    # "Start Now" saved the next step: Select CRM, with the pop-up on it.
    assert location(admin.login()) == "/onboarding/crm"
    assert "Welcome back" in admin.client.get("/onboarding/crm").get_data(as_text=True)
    admin.choose_crm()
    admin.details(sf_sandbox)
    admin.review(frequency=30, action="save")
    assert location(admin.post("/onboarding/defer")) == "/home"  # "Not now" on the pop-up
    admin.logout()
    assert location(admin.login()) == "/onboarding/review"
    review = admin.client.get("/onboarding/review").get_data(as_text=True)
    assert "Welcome back" in review and '<option selected value="30">' in review
    # An explicit destination (?next=, e.g. after a session timed out) still wins.
    admin.logout()
    assert location(admin.post("/auth/login?next=/status", {
        "email": admin.email, "password": admin.password, "next": "/status"})) == "/status"
    # Credentials removed since the save: land on the furthest step that can open.
    engine = app.extensions["accrue_warehouse"]
    tenants.delete_connection(engine, admin.tenant_id, "salesforce")
    admin.logout()
    assert location(admin.login()) == "/onboarding/details"


def test_login_with_nothing_saved_lands_home_with_the_popup(app: Flask, admin: Admin) -> None:
    admin.signup()
    admin.post("/onboarding/defer")
    admin.logout()
    assert location(admin.login()) == "/home"
    home = admin.client.get("/home").get_data(as_text=True)
    assert 'id="concierge"' in home and "Start Now" in home


def _wizard_row(engine: Engine, tenant_id: str) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(onboarding_state).where(
            onboarding_state.c.tenant_id == tenant_id)).mappings().one())


def test_terms_must_be_agreed_to_finish(app: Flask, admin: Admin,
                                        sf_sandbox: RunningSandbox) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()
    admin.details(sf_sandbox)
    admin.review()
    refused = admin.terms(agree=False)
    assert refused.status_code == 400
    assert "Please agree to the Terms and Policies" in refused.get_data(as_text=True)
    assert location(admin.client.get("/onboarding/complete")) == "/onboarding/terms"
    assert location(admin.finish()) == "/onboarding/terms"
    engine = app.extensions["accrue_warehouse"]
    assert tenants.require_tenant(engine, admin.tenant_id).status == "pending"


def test_steps_cannot_be_skipped(app: Flask, admin: Admin) -> None:
    admin.signup()
    admin.start()
    for path in ("/onboarding/details", "/onboarding/review", "/onboarding/terms",
                 "/onboarding/complete"):
        assert location(admin.client.get(path)) == "/onboarding/crm"
    admin.choose_crm()
    assert location(admin.client.get("/onboarding/review")) == "/onboarding/details"


def test_coming_soon_crms_cannot_be_chosen(app: Flask, admin: Admin,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A CRM named in the product without a connector yet is shown, never chosen."""
    from connectors import registry

    monkeypatch.setattr(registry, "PLANNED", (("pipedrive", "Pipedrive", "REST API."),))
    admin.signup()
    admin.start()
    page = admin.client.get("/onboarding/crm").get_data(as_text=True)
    assert "Pipedrive" in page and "Coming soon" in page
    response = admin.choose_crm("pipedrive")
    assert response.status_code == 400 and "coming soon" in response.get_data(as_text=True)


def test_popup_at_every_login_until_complete_and_never_after(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    admin.signup()
    assert 'id="concierge"' in admin.client.get("/home").get_data(as_text=True)
    admin.post("/onboarding/defer")  # "Not now"
    assert 'id="concierge"' not in admin.client.get("/home").get_data(as_text=True)
    for _ in range(2):
        admin.logout()
        admin.login()
        assert 'id="concierge"' in admin.client.get("/home").get_data(as_text=True)
    admin.start()
    admin.choose_crm()
    admin.details(sf_sandbox)
    admin.review()
    admin.terms()
    admin.finish()
    admin.logout()
    admin.login()
    home = admin.client.get("/home").get_data(as_text=True)
    assert 'id="concierge"' not in home and "Your CRM is connected" in home


def test_invalid_login_blames_no_single_field_and_is_said_once(
    app: Flask, admin: Admin, sf_sandbox: RunningSandbox
) -> None:
    """Issue 11.5: Salesforce's INVALID_LOGIN does not say whether the password or the
    token is wrong, so no field is blamed; the plain words appear once, without the code."""
    admin.signup()
    admin.start()
    admin.choose_crm()
    response = admin.details(sf_sandbox, action="test", password="not-the-password-1",
                             headers={"Accept": "application/json"})
    body = response.get_json()
    assert body["ok"] is False and body["field"] is None
    assert body["message"] == (
        "Salesforce did not accept this username, password and security token.")
    assert "token changes whenever the password changes" in body["hint"]
    assert "INVALID_LOGIN" not in body["message"] + body["hint"]
    assert body["seconds"] < 3
    page = admin.details(sf_sandbox, action="continue", password="not-the-password-1")
    html = page.get_data(as_text=True)
    assert page.status_code == 400
    assert html.count(body["hint"]) == 1 and html.count(body["message"]) == 1
    assert "INVALID_LOGIN" not in html and 'aria-invalid="true"' not in html
    assert 'id="security_token-error"' not in html and 'id="password-error"' not in html
    ok = admin.details(sf_sandbox, action="test", headers={"Accept": "application/json"})
    assert ok.get_json()["ok"] is True and ok.get_json()["next"] == "/onboarding/review"


def test_missing_fields_are_reported_without_contacting_salesforce(
    app: Flask, admin: Admin, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin.signup()
    admin.start()
    admin.choose_crm()
    calls: list[str] = []
    monkeypatch.setattr(requests.Session, "send",
                        lambda self, request, **kw: calls.append(request.url))
    response = admin.details(None, action="continue", username="", password="")
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Enter the Salesforce username." in html and "Enter the password." in html
    assert calls == []


def test_details_page_has_help_per_field_and_labels(concierge_db_url: str) -> None:
    """Against real Salesforce (no sandbox) the environment and My Domain are asked for."""
    admin = Admin(make_app(concierge_db_url, None).test_client())
    admin.signup()
    admin.start()
    admin.choose_crm()
    html = admin.client.get("/onboarding/details").get_data(as_text=True)
    assert html.count("Where do I find this?") == 5
    for field in ("my_domain", "username", "password", "security_token"):
        assert f'<label for="{field}">' in html
    assert 'name="environment"' in html and "Demo mode" not in html
    for text in ("Connect with Salesforce", "Save and Continue Later", "Continue"):
        assert text in html
    assert "Test connection" not in html  # nothing saved yet: nothing to test


def test_healthz_and_public_pages(concierge_db_url: str) -> None:
    client = make_app(concierge_db_url).test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    assert "Salesforce" in client.get("/").get_data(as_text=True)
    assert location(client.get("/home")) == "/auth/login"


def test_files_are_plain_ascii_paths(tmp_path: Path) -> None:
    """Templates live inside the package (shipped with it)."""
    root = Path(__file__).resolve().parents[2] / "onboarding_app"
    for name in ("templates/base.html", "templates/onboarding/details.html",
                 "static/app.css", "static/app.js", "templates/email/setup_complete.txt"):
        assert (root / name).is_file()
    # The first-data e-mail is sent by the pipelines too, so it lives with accrue.
    assert (root.parent / "accrue" / "templates" / "email" / "first_data.txt").is_file()
