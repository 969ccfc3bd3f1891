"""Concierge settings, read from the environment once per `create_app`.

Secure by default: outside `ACCRUE_APP_ENV=development` cookies are `Secure`
and `__Host-` prefixed. Everything a test or an operator may change is a
Flask config key, so `create_app(test_config)` can override any of it.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import Any, overload

from accrue import config as accrue_config
from accrue.onboarding_notify import SmtpSettings
from connectors import registry

logger = logging.getLogger(__name__)

APP_ENV = "ACCRUE_APP_ENV"
SECRET_KEY_ENV = "ACCRUE_APP_SECRET_KEY"
SECRET_KEY_FILENAME = "app_secret_key"
TERMS_VERSION = "2026-01"


@overload
def _env(name: str, default: None = None) -> str | None: ...
@overload
def _env(name: str, default: str) -> str: ...
def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def _local_secret_key() -> str:
    """A per-machine key in ACCRUE_HOME, like the demo encryption key: fine locally only."""
    path = Path(accrue_config.accrue_home()) / SECRET_KEY_FILENAME
    if not path.is_file():
        path.write_text(secrets.token_urlsafe(48), encoding="utf-8")
        path.chmod(0o600)
        logger.warning(
            "%s is not set: signing sessions with a generated key in %s. Set it in production.",
            SECRET_KEY_ENV, path,
        )
    return path.read_text(encoding="utf-8").strip()


def _oauth_clients() -> dict[str, dict[str, str]]:
    """The connected app (client id and secret) of each CRM that signs in in the browser."""
    clients: dict[str, dict[str, str]] = {}
    for spec in registry.specs():
        for method in spec.auth_methods:
            if method.oauth and _env(method.oauth.client_id_env):
                clients[spec.key] = {
                    "client_id": str(_env(method.oauth.client_id_env)),
                    "client_secret": str(_env(method.oauth.client_secret_env) or ""),
                }
    return clients


def from_env() -> dict[str, Any]:
    """Defaults for every setting the app reads (Flask config keys)."""
    smtp = SmtpSettings.from_env()
    return {
        # ACCRUE_APP_ENV, else the platform's ACCRUE_ENV; production unless told otherwise.
        "ENV_NAME": _env(APP_ENV) or _env("ACCRUE_ENV") or "production",
        "SECRET_KEY": _env(SECRET_KEY_ENV),
        "DATABASE_URL": None,  # None: accrue.config.database_url()
        "PUBLIC_URL": _env("ACCRUE_APP_PUBLIC_URL"),
        # Reverse proxies in front (their X-Forwarded-For/-Proto/-Host are trusted); unset
        # means 1 in production (behind the load balancer), 0 in development (direct).
        "PROXY_HOPS": _env("ACCRUE_APP_PROXY_HOPS"),
        # Per CRM (from its spec): a local sandbox that replaces every host of that CRM
        # (ACCRUE_<CRM>_SANDBOX_URL), and the connected app for its browser sign-in.
        "SANDBOX_URLS": {s.key: _env(s.sandbox_url_env) for s in registry.specs()
                         if _env(s.sandbox_url_env)},
        "OAUTH_CLIENTS": _oauth_clients(),
        "CONNECTION_TEST_TIMEOUT_SECONDS": float(_env("ACCRUE_CONNECTION_TEST_TIMEOUT", "8")),
        # E-mail: with no SMTP host nothing is sent (development prints it; production
        # refuses to start, since sign-up is confirmed by e-mail).
        # The same variables the pipelines' e-mail sensor reads (accrue.onboarding_notify).
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": smtp.port,
        "SMTP_USERNAME": smtp.username,
        "SMTP_PASSWORD": smtp.password,
        "SMTP_STARTTLS": smtp.starttls,
        "SMTP_SSL": smtp.use_ssl,
        "MAIL_FROM": smtp.mail_from,
        # Our forms send a few KB; refuse anything far larger before reading it (413).
        "MAX_CONTENT_LENGTH": 256 * 1024,
        # Login protection.
        "RATELIMIT_STORAGE_URI": _env("ACCRUE_RATELIMIT_STORAGE_URI", "memory://"),
        # Off: the limiter would stamp every response with its own window reset as
        # Retry-After, overriding the precise wait a failed login is given (login_guard).
        "RATELIMIT_HEADERS_ENABLED": False,
        "LOGIN_LIMIT_PER_IP": "30 per minute",
        "SIGNUP_LIMIT_PER_IP": "20 per hour",
        "CONNECTION_TEST_LIMIT": "20 per minute",
        # Per API token (onboarding_app.api): a BI refresh pages through deals quickly.
        "API_RATE_LIMIT": _env("ACCRUE_API_RATE_LIMIT", "600 per minute"),
        # Push API (onboarding_app.push): per tenant, counted once authenticated; batch size.
        "PUSH_RATE_LIMIT": _env("ACCRUE_PUSH_RATE_LIMIT", "600 per minute"),
        "PUSH_MAX_BODY_BYTES": int(_env("ACCRUE_PUSH_MAX_BODY_BYTES", str(5 * 1024 * 1024))),
        # File uploads (onboarding_app.uploads): one upload, and what a zip may unpack to.
        "FILE_UPLOAD_MAX_BYTES": int(_env("ACCRUE_FILE_UPLOAD_MAX_BYTES", str(200 * 1024 * 1024))),
        "FILE_UPLOAD_MAX_UNZIPPED_BYTES": int(_env("ACCRUE_FILE_UPLOAD_MAX_UNZIPPED_BYTES",
                                                   str(1024 * 1024 * 1024))),
        "SESSION_IDLE_MINUTES": 120,
        "SESSION_MAX_HOURS": 12,
        "TERMS_VERSION": TERMS_VERSION,
        "WTF_CSRF_TIME_LIMIT": None,  # the token lives as long as the login session
        "WTF_CSRF_SSL_STRICT": True,
    }


class ConfigurationError(RuntimeError):
    """The concierge cannot start safely with these settings; the message says what to set."""


def _require_production_settings(config: dict[str, Any]) -> None:
    """Production refuses to start on what is only safe on a laptop."""
    missing = []
    if not config.get("PUBLIC_URL"):
        missing.append("ACCRUE_APP_PUBLIC_URL (the concierge's https:// address: OAuth "
                       "redirect URIs and e-mailed links are built from it, never from the "
                       "request's Host header)")
    if not config.get("SECRET_KEY"):
        missing.append(f"{SECRET_KEY_ENV} (signs sessions; the generated key file is for "
                       "local use only)")
    problems = [f"set {m}" for m in missing]
    if str(config.get("RATELIMIT_STORAGE_URI") or "memory://").startswith("memory://"):
        problems.append("set ACCRUE_RATELIMIT_STORAGE_URI to a Redis URL (redis://host:6379/0): "
                        "login counts must be shared by every worker process")
    if not accrue_config.secret_keys():
        problems.append("set ACCRUE_SECRET_KEYS (`accrue keys generate`): the key file in "
                        "ACCRUE_HOME is for the local demo only")
    if not config.get("SMTP_HOST"):
        problems.append("set ACCRUE_SMTP_HOST (and ACCRUE_SMTP_PORT, _USERNAME, _PASSWORD as "
                        "your mail server needs): sign-up is confirmed by an e-mailed link")
    for key in sorted(config.get("SANDBOX_URLS") or {}):
        spec = registry.spec(key)
        problems.append(f"unset {spec.sandbox_url_env} (the local {spec.name} sandbox "
                        f"stands in for {spec.name} in demos and tests only)")
    public = str(config.get("PUBLIC_URL") or "")
    if public and not public.startswith("https://"):
        problems.append("make ACCRUE_APP_PUBLIC_URL an https:// address (cookies are Secure)")
    if problems:
        raise ConfigurationError(
            "ACCRUE_APP_ENV=production (the default) needs: " + "; ".join(problems)
            + ". For a local trial set ACCRUE_APP_ENV=development."
        )


def finalise(config: dict[str, Any], *, testing: bool, explicit: set[str]) -> None:
    """Derive cookie settings from ENV_NAME (unless set explicitly) and ensure a signing key."""
    development = config.get("ENV_NAME") == "development"
    if not development:
        _require_production_settings(config)
    hops = config.get("PROXY_HOPS")
    config["PROXY_HOPS"] = (0 if development else 1) if hops in (None, "") else int(hops)
    if not config.get("SECRET_KEY"):
        config["SECRET_KEY"] = secrets.token_urlsafe(48) if testing else _local_secret_key()
    derived = {
        "SESSION_COOKIE_SECURE": not development,
        "SESSION_COOKIE_NAME": "accrue_session" if development else "__Host-accrue_session",
        "PREFERRED_URL_SCHEME": "http" if development else "https",
    }
    for key, value in derived.items():
        if key not in explicit:
            config[key] = value
    config["SESSION_COOKIE_HTTPONLY"] = True
    config["SESSION_COOKIE_SAMESITE"] = "Lax"
