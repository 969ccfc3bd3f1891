"""Sign-up confirmed by an e-mailed link: nothing revealed about who has an account
(issue 9, item 5), links that work once and expire, and an inbox nobody can flood."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import Engine

from accrue.schema import app_user, email_link, utcnow
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    CONFIRM_LINK,
    CSRF,
    Admin,
    app_fixture,
    concierge_db_url_fixture,
    confirm_path,
    make_app,
)
from onboarding_app.auth import email_links
from onboarding_app.logs import RedactingFilter


def _accounts(app: Flask, email: str) -> int:
    engine = app.extensions["accrue_warehouse"]
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(app_user).where(
            app_user.c.email == email)).scalar_one())


def _sent_page(person: Admin) -> str:
    """The page after sign-up, without the address and the per-session CSRF token."""
    text = person.client.get("/auth/signup/sent").get_data(as_text=True)
    return CSRF.sub("csrf", text.replace(person.email, "<e-mail>"))


def test_sign_up_answers_the_same_for_a_known_address_and_mails_its_owner(app: Flask) -> None:
    owner = Admin(app.test_client())
    owner.signup()
    stranger = Admin(app.test_client(), email=owner.email)
    newcomer = Admin(app.test_client())

    known, known_mails = stranger.request_signup("Stranger Co")
    new, new_mails = newcomer.request_signup("Newcomer Co")

    assert known.status_code == new.status_code == 302
    assert known.headers["Location"] == new.headers["Location"]
    assert _sent_page(stranger) == _sent_page(newcomer)  # the same page, but for the address
    assert "Check your inbox" in _sent_page(newcomer)
    # The owner learns of the attempt; no link, and the account is untouched.
    [notice] = known_mails
    assert notice.to == owner.email and "already have an Accrue account" in notice.subject
    assert not CONFIRM_LINK.search(notice.body) and "/auth/login" in notice.body
    assert _accounts(app, owner.email) == 1
    assert owner.login().status_code == 302  # the owner's password still works
    # The newcomer's account exists only once the link is used.
    assert _accounts(app, newcomer.email) == 0
    assert newcomer.post(confirm_path(new_mails, newcomer.email)).status_code == 302
    assert _accounts(app, newcomer.email) == 1
    assert newcomer.client.get("/home").status_code == 200  # logged in by the link


def test_a_link_works_once_and_retires_the_address_s_other_links(app: Flask) -> None:
    person = Admin(app.test_client())
    _, first = person.request_signup("Acme Corp")
    _, second = person.request_signup("Acme Corp")
    first_path, second_path = confirm_path(first, person.email), confirm_path(second, person.email)
    assert first_path != second_path

    assert person.post(first_path).status_code == 302
    again = Admin(app.test_client(), email=person.email)
    for path in (first_path, second_path):
        assert again.client.get(path).status_code == 404
        response = again.post(path)
        assert response.status_code == 404
        assert "expired or was used" in response.get_data(as_text=True)
    assert _accounts(app, person.email) == 1


def test_opening_the_link_does_not_use_it_up(app: Flask) -> None:
    """Mail scanners follow links: a GET only shows what the link does."""
    person = Admin(app.test_client())
    _, mails = person.request_signup("Scanner Co")
    path = confirm_path(mails, person.email)
    for _ in range(2):
        page = Admin(app.test_client()).client.get(path)
        assert page.status_code == 200
        assert "Scanner Co" in page.get_data(as_text=True)
    assert _accounts(app, person.email) == 0
    assert person.post(path).status_code == 302
    assert _accounts(app, person.email) == 1


def test_an_expired_link_creates_nothing(app: Flask) -> None:
    person = Admin(app.test_client())
    _, mails = person.request_signup()
    engine = app.extensions["accrue_warehouse"]
    with engine.begin() as conn:
        conn.execute(sa.update(email_link).where(email_link.c.email == person.email)
                     .values(expires_at=utcnow() - timedelta(seconds=1)))
    path = confirm_path(mails, person.email)
    assert person.client.get(path).status_code == 404
    assert person.post(path).status_code == 404
    assert _accounts(app, person.email) == 0


@pytest.mark.parametrize("token", ["not-a-token", "A" * 43, "x" * 300])
def test_an_unknown_token_is_refused(app: Flask, token: str) -> None:
    person = Admin(app.test_client())
    assert person.client.get(f"/auth/confirm/{token}").status_code == 404
    assert person.post(f"/auth/confirm/{token}").status_code == 404


def test_a_notice_cannot_be_redeemed_as_a_sign_up(app: Flask) -> None:
    engine = app.extensions["accrue_warehouse"]
    token = email_links.issue(engine, email_links.SIGNUP_NOTICE, "owner@example.com")
    assert email_links.redeem(engine, token, email_links.SIGNUP) is None
    assert Admin(app.test_client()).post(f"/auth/confirm/{token}").status_code == 404


def test_confirming_needs_the_csrf_token(app: Flask) -> None:
    person = Admin(app.test_client())
    _, mails = person.request_signup()
    response = person.client.post(confirm_path(mails, person.email), data={})
    assert response.status_code == 400
    assert _accounts(app, person.email) == 0


def test_an_address_gets_a_few_mails_an_hour_whoever_asks(app: Flask) -> None:
    """The form must not flood a victim's inbox: the cap is per address, not per client."""
    email = "victim@example.com"
    mailed = []
    for attempt in range(email_links.MAX_PER_ADDRESS_PER_HOUR + 2):
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = f"198.51.100.{attempt + 1}"
        response, mails = Admin(client, email=email).request_signup()
        assert response.status_code == 302  # the same answer, mail or not
        mailed.append(len(mails))
    assert mailed == [1] * email_links.MAX_PER_ADDRESS_PER_HOUR + [0, 0]


def test_without_an_smtp_host_development_prints_the_mail(
    concierge_db_url: str, capfd: pytest.CaptureFixture[str]
) -> None:
    app = make_app(concierge_db_url, None, SMTP_HOST=None)
    person = Admin(app.test_client())
    person.request_signup()
    printed = capfd.readouterr().err
    assert f"To: {person.email}" in printed and "/auth/confirm/" in printed
    assert "E-mail is off on this server" in person.client.get("/auth/signup/sent").get_data(
        as_text=True)


def test_link_tokens_are_redacted_from_request_logs() -> None:
    record = logging.LogRecord("werkzeug", logging.INFO, __file__, 1,
                               '"GET /auth/confirm/%s HTTP/1.1" 200 -', ("Zq3_x-" * 7,), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == '"GET /auth/confirm/[REDACTED] HTTP/1.1" 200 -'


def test_links_on_every_warehouse_backend(engine: Engine) -> None:
    """The same single-use, expiring, capped links on SQLite and PostgreSQL."""
    email = f"Ana.{utcnow().timestamp()}@Example.com"
    token = email_links.issue(engine, email_links.SIGNUP, email, {"company": "Acme"})
    peeked = email_links.peek(engine, token, email_links.SIGNUP)
    assert peeked is not None and peeked.email == email.lower()
    assert email_links.peek(engine, token, email_links.SIGNUP_NOTICE) is None
    redeemed = email_links.redeem(engine, token, email_links.SIGNUP)
    assert redeemed is not None and redeemed.payload == {"company": "Acme"}
    assert email_links.redeem(engine, token, email_links.SIGNUP) is None
    for _ in range(email_links.MAX_PER_ADDRESS_PER_HOUR):
        assert email_links.may_send(engine, email)
        email_links.issue(engine, email_links.SIGNUP_NOTICE, email)
    assert not email_links.may_send(engine, email.upper())  # the address, however written
    assert email_links.may_send(engine, "someone.else@example.com")
