"""The concierge as production runs it: gunicorn, one trusted proxy hop, Redis-backed
login counts, and the settings it refuses to start without (issue 9, production serving)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
import requests

from accrue import config
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    concierge_db_url_fixture,
    make_app,
)

REDIS_LIMITS = "redis://127.0.0.1:6379/5"
# What production needs (settings.py refuses to start without it); the test's own key
# ring comes from the autouse accrue_env fixture.
PRODUCTION = {"ENV_NAME": "production", "SECRET_KEY": "s" * 40,
              "PUBLIC_URL": "https://concierge.example.com",
              "RATELIMIT_STORAGE_URI": REDIS_LIMITS,
              # Nothing listens there: tests that need a delivered mail use an aiosmtpd inbox.
              "SMTP_HOST": "127.0.0.1", "SMTP_PORT": 9}


def test_production_cookie_flags(concierge_db_url: str) -> None:
    app = make_app(concierge_db_url, None, **PRODUCTION, SERVER_NAME=None)
    response = app.test_client().get("/auth/login")  # the CSRF token opens a session
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-accrue_session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in cookie
    assert "Domain=" not in cookie
    assert "max-age=31536000" in response.headers["Strict-Transport-Security"]


@pytest.mark.parametrize(("settings", "says"), [
    ({**PRODUCTION, "PUBLIC_URL": None}, "ACCRUE_APP_PUBLIC_URL"),
    ({**PRODUCTION, "SECRET_KEY": None}, "ACCRUE_APP_SECRET_KEY"),
    ({**PRODUCTION, "PUBLIC_URL": "http://concierge.example.com"}, "https://"),
    ({**PRODUCTION, "SANDBOX_URLS": {"salesforce": "http://127.0.0.1:8701"}},
     "ACCRUE_SALESFORCE_SANDBOX_URL"),
    ({**PRODUCTION, "RATELIMIT_STORAGE_URI": "memory://"}, "ACCRUE_RATELIMIT_STORAGE_URI"),
    ({**PRODUCTION, "SMTP_HOST": None}, "ACCRUE_SMTP_HOST"),
])
def test_production_refuses_to_start_without_a_public_url_and_key(
    concierge_db_url: str, settings: dict[str, str], says: str
) -> None:
    """Issue 9, item 8: no redirect URI from the Host header, no laptop key, no sandbox."""
    from onboarding_app.settings import ConfigurationError

    with pytest.raises(ConfigurationError, match=re.escape(says)) as refused:
        make_app(concierge_db_url, None, **settings)
    assert "ACCRUE_APP_ENV=development" in str(refused.value)  # and the way out for a trial


def test_production_refuses_the_demo_key_file(
    concierge_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onboarding_app.settings import ConfigurationError

    monkeypatch.delenv(config.SECRET_KEYS_ENV)
    with pytest.raises(ConfigurationError, match="ACCRUE_SECRET_KEYS"):
        make_app(concierge_db_url, None, **PRODUCTION)


def test_behind_the_proxy_limits_key_on_the_client_not_on_the_proxy(
    concierge_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Production trusts one proxy hop (ProxyFix), and login counts live in Redis: a
    stranger's failures slow the stranger; the owner behind the same proxy logs in."""
    import redis

    from onboarding_app.auth import login_guard

    # A first wait of ten minutes: no login, however slow the machine, outlasts it.
    monkeypatch.setattr(login_guard, "FIRST_WAIT_SECONDS", 600)
    redis.Redis.from_url(REDIS_LIMITS).flushdb()
    app = make_app(concierge_db_url, None, **PRODUCTION, SERVER_NAME=None,
                   SESSION_COOKIE_SECURE=False, WTF_CSRF_SSL_STRICT=False)
    owner = Admin(app.test_client())
    owner.client.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.1"
    owner.signup()
    owner.logout()
    stranger = Admin(app.test_client(), email=owner.email)
    stranger.client.environ_base["HTTP_X_FORWARDED_FOR"] = "203.0.113.9"
    statuses = [stranger.login(password=f"guess-{i}").status_code for i in range(7)]
    assert 429 not in statuses[:5]  # five free failures
    assert statuses[5:] == [429, 429]
    assert redis.Redis.from_url(REDIS_LIMITS).keys("*login-wait*")  # counted in Redis
    assert owner.login().status_code == 302  # same proxy, other client: not held back
    # A client who forges the header is still one client behind the proxy: its own value
    # (the leftmost) is not the one trusted.
    forged = Admin(app.test_client(), email=owner.email)
    forged.client.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.1, 203.0.113.9"
    assert forged.login(password="again-wrong").status_code == 429


def test_gunicorn_serves_the_concierge_in_production_and_refuses_a_bad_setup(
    tmp_path: Path, concierge_db_url: str
) -> None:
    """`accrue app` is gunicorn with the production checks, not Werkzeug's dev server."""
    import subprocess
    import sys
    import time

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "ACCRUE_APP_ENV": "production", "ACCRUE_DATABASE_URL": concierge_db_url,
           "ACCRUE_APP_SECRET_KEY": "s" * 40, "ACCRUE_APP_PUBLIC_URL": "https://c.example.com",
           "ACCRUE_RATELIMIT_STORAGE_URI": REDIS_LIMITS, "ACCRUE_APP_WORKERS": "2",
           "ACCRUE_SMTP_HOST": "127.0.0.1"}
    env.pop("ACCRUE_SALESFORCE_SANDBOX_URL", None)
    server = subprocess.Popen([sys.executable, "-m", "accrue_cli", "app", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/auth/login", timeout=15)
                break
            except (requests.ConnectionError, requests.Timeout):
                assert server.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(0.3)
        assert response.status_code == 200
        assert response.headers["Set-Cookie"].startswith("__Host-accrue_session=")
        assert response.headers["Server"].startswith("gunicorn")
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output[-2000:]  # a graceful stop on SIGTERM
    del env["ACCRUE_APP_PUBLIC_URL"]
    refused = subprocess.run([sys.executable, "-m", "accrue_cli", "app", "--port", str(port)],
                             env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "ACCRUE_APP_PUBLIC_URL" in refused.stdout + refused.stderr
