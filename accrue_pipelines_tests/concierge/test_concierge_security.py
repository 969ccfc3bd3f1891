"""The concierge's security rules for the browser, each with its negative case (S1 and the app
checklist): CSRF, logins, sessions, passwords, headers, redirects and errors. What the
concierge holds and reaches is in test_concierge_security_data.py."""

from __future__ import annotations

import logging
import re

import pytest
import sqlalchemy as sa
from flask import Flask

from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    CSRF,
    Admin,
    admin_fixture,
    app_fixture,
    concierge_db_url_fixture,
    location,
    make_app,
)
from onboarding_app.security import LOGIN_FAILED


def _without_tokens(html: str) -> str:
    return CSRF.sub("", re.sub(r'name="csrf_token" type="hidden" value="[^"]+"', "", html))


def test_missing_or_wrong_csrf_token_is_refused(app: Flask, admin: Admin) -> None:
    admin.signup()
    for token in (None, "forged-token"):
        data = {} if token is None else {"csrf_token": token}
        response = admin.client.post("/onboarding/start", data=data)
        assert response.status_code == 400
        assert "This form has expired" in response.get_data(as_text=True)
    fetch = admin.client.post("/onboarding/connections/1/test",
                              headers={"X-CSRFToken": "nope", "Accept": "application/json"})
    assert fetch.status_code == 400 and fetch.get_json()["error"] == "This form has expired"
    login = admin.client.post("/auth/login", data={"email": admin.email, "password": "x"})
    assert login.status_code == 400


def test_fetch_with_the_csrf_header_is_accepted(app: Flask, admin: Admin) -> None:
    admin.signup()
    response = admin.client.post("/onboarding/defer", headers={
        "X-CSRFToken": admin.token("/home"), "Accept": "application/json"})
    assert response.status_code == 204


def test_one_message_for_unknown_user_and_wrong_password(app: Flask, admin: Admin) -> None:
    admin.signup()
    admin.logout()
    wrong_password = admin.login(password="not the password at all")
    unknown = Admin(app.test_client(), email="nobody-here@example.com").login()
    assert wrong_password.status_code == unknown.status_code == 401
    assert LOGIN_FAILED in wrong_password.get_data(as_text=True)
    assert _without_tokens(wrong_password.get_data(as_text=True)).replace(
        admin.email, "") == _without_tokens(unknown.get_data(as_text=True)).replace(
        "nobody-here@example.com", "")


def test_a_stranger_cannot_lock_the_owner_out(app: Flask, admin: Admin) -> None:
    """Issue 9, item 5: failures slow down the client that fails, for that account only."""
    admin.signup()
    admin.logout()
    stranger = Admin(app.test_client(), email=admin.email)
    stranger.client.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    statuses = [stranger.login(password=f"guess-{i}").status_code for i in range(7)]
    assert statuses[:5] == [401] * 5 and 429 in statuses[5:]
    refused = stranger.login(password=admin.password)  # even the right one, while waiting
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert location(admin.login()) is not None  # the owner, from their own address: in


def test_failed_logins_back_off_progressively_and_success_resets(
    app: Flask, admin: Admin
) -> None:
    import time

    from onboarding_app.auth.login_guard import FREE_FAILURES

    admin.signup()
    admin.logout()
    for _ in range(3):  # successful logins never count
        assert admin.login().status_code == 302
        admin.logout()
    assert [admin.login(password="wrong").status_code
            for _ in range(FREE_FAILURES)] == [401] * FREE_FAILURES
    first_wait = admin.login(password="wrong")
    assert first_wait.status_code == 429 and first_wait.headers["Retry-After"] == "1"
    time.sleep(1.1)
    assert admin.login(password="wrong").status_code == 401  # allowed again, failed again
    second_wait = admin.login()
    assert second_wait.status_code == 429 and second_wait.headers["Retry-After"] == "2"
    time.sleep(2.1)
    assert admin.login().status_code == 302  # the right password after the wait
    admin.logout()
    assert admin.login(password="wrong").status_code == 401  # the count started over


def test_login_is_rate_limited_per_address(concierge_db_url: str) -> None:
    app = make_app(concierge_db_url, LOGIN_LIMIT_PER_IP="3 per minute")
    statuses = [Admin(app.test_client(), email=f"u{i}@example.com").login().status_code
                for i in range(4)]
    assert statuses == [401, 401, 401, 429]


def test_passwords_are_argon2_hashes(app: Flask, admin: Admin) -> None:
    admin.signup()
    engine = app.extensions["accrue_warehouse"]
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT password_hash FROM app_user WHERE email = :e"),
                              {"e": admin.email}).scalar_one()
    assert stored.startswith("$argon2id$") and admin.password not in stored


def test_development_cookie_is_not_secure_but_still_httponly_and_lax(app: Flask,
                                                                     admin: Admin) -> None:
    cookie = admin.signup().headers["Set-Cookie"]
    assert cookie.startswith("accrue_session=") and "Secure" not in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_new_session_on_login_and_logout_really_ends_it(app: Flask, admin: Admin) -> None:
    admin.signup()
    admin.logout()
    anonymous_cookie = admin.client.get_cookie("accrue_session", domain="concierge.test")
    admin.login()
    session_cookie = admin.client.get_cookie("accrue_session", domain="concierge.test")
    assert session_cookie is not None
    assert anonymous_cookie is None or anonymous_cookie.value != session_cookie.value
    stolen = session_cookie.value
    admin.logout()
    thief = app.test_client()
    thief.set_cookie("accrue_session", stolen, domain="concierge.test")
    assert location(thief.get("/home")) == "/auth/login"


def test_security_headers_on_every_blueprint(app: Flask, admin: Admin) -> None:
    admin.signup()
    for path in ("/", "/auth/login", "/home", "/onboarding/welcome", "/status",
                 "/static/app.css", "/missing"):
        headers = admin.client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"


# What browsers turn into another site: tabs and newlines are dropped, a backslash is a slash.
OFFSITE_TARGETS = ["/\t/evil.com", "/\n/evil.com", "/\\evil.com", "\\\\evil.com", "//evil.com",
                   "/\r\n/evil.com", "https://evil.com/", "javascript:alert(1)", "/\x7f/evil.com",
                   "evil.com", "///evil.com"]


def test_redirect_targets_are_same_site_paths_only() -> None:
    from onboarding_app.security import safe_next

    for target in OFFSITE_TARGETS:
        assert safe_next(target) is None, repr(target)
    for target in ("/status", "/onboarding/review?from=mail", "/home#top"):
        assert safe_next(target) == target


@pytest.mark.parametrize("target", OFFSITE_TARGETS)
def test_login_and_save_for_later_never_redirect_off_site(
    app: Flask, admin: Admin, target: str
) -> None:
    """Issue 9, items 4 and 6: no open redirect, and no 500 for control characters."""
    admin.signup()
    admin.start()
    saved = admin.post("/onboarding/crm", {"crm": "salesforce", "action": "save",
                                           "next_url": target})
    assert saved.status_code == 302 and location(saved) == "/home"
    admin.logout()
    response = admin.post("/auth/login", {"email": admin.email, "password": admin.password,
                                          "next": target})
    assert response.status_code == 302
    landing = location(response)
    assert landing.startswith("/") and not landing.startswith("//") and "evil" not in landing


def test_odd_requests_get_a_clear_answer_never_a_500(app: Flask, admin: Admin) -> None:
    """Issue 9, items 6 and 9: a huge id, a huge body, JSON callers, an unexpected error."""
    admin.signup()
    huge_id = admin.client.get("/status/runs/99999999999999999999999")
    assert huge_id.status_code == 404
    json_404 = admin.client.get("/no/such/page", headers={"Accept": "application/json"})
    assert json_404.status_code == 404 and json_404.get_json()["error"] == "Page not found"
    json_405 = admin.client.delete("/status", headers={"Accept": "application/json"})
    assert json_405.status_code == 405 and json_405.is_json
    too_big = admin.client.post("/auth/login", data={"email": "x@example.com",
                                                     "password": "p" * (20 * 1024 * 1024)})
    assert too_big.status_code == 413 and "at most" in too_big.get_data(as_text=True)


def test_an_unexpected_error_is_logged_and_answered_without_detail(
    concierge_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(concierge_db_url)

    def fail() -> str:
        raise RuntimeError("database exploded: password=hunter2")

    app.add_url_rule("/boom", view_func=fail)
    client = app.test_client()
    with caplog.at_level(logging.ERROR):
        page = client.get("/boom")
        answer = client.get("/boom", headers={"Accept": "application/json"})
    assert page.status_code == 500 and "Something went wrong" in page.get_data(as_text=True)
    assert answer.status_code == 500 and answer.get_json()["error"] == "Something went wrong"
    for response in (page, answer):
        assert "exploded" not in response.get_data(as_text=True)  # no detail to the browser
    assert "database exploded" in caplog.text and "hunter2" not in caplog.text  # redacted log


def test_log_out_everywhere_ends_every_device_s_session(app: Flask, admin: Admin) -> None:
    """Issue 9, item 7 (ASVS 3.3.4): one click ends the sessions on all devices."""
    admin.signup()
    admin.logout()
    laptop, phone = admin, Admin(app.test_client(), email=admin.email)
    assert laptop.login().status_code == 302 and phone.login().status_code == 302
    assert phone.client.get("/home").status_code == 200
    ended = laptop.post("/auth/logout", {"everywhere": "1"})
    assert location(ended) == "/auth/login"
    for device in (laptop, phone):
        assert device.client.get("/home").status_code == 302  # back to the login page
    notice = laptop.client.get("/auth/login").get_data(as_text=True)
    assert "every device (2 sessions ended)" in notice


@pytest.mark.parametrize("password", ["password1234", "qwertyuiop123", "Password123!",
                                      "1q2w3e4r5t6y", "acmecorp2026", "ana.admin@example.com"])
def test_common_breached_and_own_passwords_are_refused_at_sign_up(
    app: Flask, password: str
) -> None:
    """Issue 9, item 10 (ASVS 2.1.7): length alone is not enough; checked offline."""
    person = Admin(app.test_client(), email="ana.admin@example.com")
    response = person.post("/auth/signup", {"company": "Acme Corp", "full_name": "Ana Admin",
                                            "email": person.email, "password": password})
    assert response.status_code == 400, password
    assert "too easy to guess" in response.get_data(as_text=True)
    engine = app.extensions["accrue_warehouse"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM app_user WHERE email = :e"),
                            {"e": person.email}).scalar_one() == 0


def test_a_short_password_is_refused_with_the_rule(app: Flask) -> None:
    person = Admin(app.test_client())
    response = person.post("/auth/signup", {"company": "Acme Corp", "full_name": "Ana Admin",
                                            "email": person.email, "password": "x7#Kq2!mZ"})
    assert response.status_code == 400
    assert "Use at least 12 characters" in response.get_data(as_text=True)


@pytest.mark.parametrize("column", ["last_seen_at", "expires_at"])
def test_idle_and_absolute_session_timeouts_end_the_session(
    app: Flask, admin: Admin, column: str
) -> None:
    """ASVS 3.3.2: 2 h idle, 12 h absolute; an expired session row is deleted."""
    from datetime import timedelta

    from accrue.schema import app_session, utcnow

    admin.signup()
    assert admin.client.get("/home").status_code == 200
    engine = app.extensions["accrue_warehouse"]
    past = utcnow() - timedelta(hours=13)
    with engine.begin() as conn:
        conn.execute(sa.update(app_session).where(
            app_session.c.tenant_id == admin.tenant_id).values({column: past}))
    assert admin.client.get("/home").status_code == 302  # to the login page
    with engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(app_session).where(
            app_session.c.tenant_id == admin.tenant_id)).scalar_one()
    assert left == 0
