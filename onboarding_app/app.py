"""Application factory: settings, then a short list of `register_*` steps.

The top-level modules of `onboarding_app` are the core every feature shares (settings,
extensions, security, headers, errors, the store, the audit trail, e-mail); each
sub-package is one feature with its blueprint, views and forms.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, g, request
from flask_wtf.csrf import generate_csrf
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from onboarding_app import (
    api,
    auth,
    errors,
    headers,
    integration,
    main,
    people,
    push,
    results,
    settings,
    status,
    uploads,
    wizard,
)
from onboarding_app.extensions import csrf, limiter, warehouse
from onboarding_app.logs import install_log_redaction
from onboarding_app.security import load_current_user, refuse_outside_role


class RowIdConverter(IntegerConverter):
    """`<row_id:name>`: a database id, so at most 64 bits; a longer number is a 404 at
    routing, instead of overflowing the query (a 500)."""

    def __init__(self, url_map: Any) -> None:
        super().__init__(url_map, max=2**63 - 1)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    configure(app, test_config)
    register_extensions(app)
    register_blueprints(app)
    register_request_hooks(app)
    headers.register(app)
    errors.register(app)
    return app


def configure(app: Flask, test_config: Mapping[str, Any] | None) -> None:
    """Settings from the environment, overridden by `test_config`; the proxies trusted."""
    app.config.from_mapping(settings.from_env())
    if test_config:
        app.config.update(test_config)
    settings.finalise(app.config, testing=bool(app.config.get("TESTING")),
                      explicit=set(test_config or {}))
    install_log_redaction()
    if app.config["PROXY_HOPS"]:
        # Client address, scheme and host as the proxy saw them (rate limits key on the
        # address), trusting exactly PROXY_HOPS proxies: a client's own header is ignored.
        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]


def register_extensions(app: Flask) -> None:
    warehouse.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    app.url_map.converters["row_id"] = RowIdConverter


def register_blueprints(app: Flask) -> None:
    for blueprint in (main.bp, auth.bp, wizard.bp, status.bp, integration.bp, people.bp,
                      results.bp, uploads.bp):
        app.register_blueprint(blueprint)
    # The API reads no cookie (bearer tokens only), so there is no session for CSRF to ride.
    csrf.exempt(api.bp)
    csrf.exempt(push.bp)  # signed by the sender (Standard Webhooks); no cookie is read
    for blueprint in (api.bp, api.tokens_bp, push.bp):
        app.register_blueprint(blueprint)


def register_request_hooks(app: Flask) -> None:
    """Who is logged in, for every request but static files; what every template may use."""

    @app.before_request
    def _load_user() -> None:
        if request.endpoint != "static":
            load_current_user()
            refuse_outside_role()

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"csrf_token_value": generate_csrf, "user": g.get("user")}
