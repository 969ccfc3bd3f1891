"""Application factory: settings, extensions, blueprints, headers, error pages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError, generate_csrf
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter

from connectors import registry
from onboarding_app import (
    api,
    auth,
    integration,
    onboarding,
    people,
    push,
    results,
    settings,
    status,
    uploads,
    views,
)
from onboarding_app.extensions import csrf, limiter, warehouse
from onboarding_app.security import (
    get_logger,
    install_log_redaction,
    load_current_user,
    refuse_outside_role,
)

API_PREFIX = "/api/"  # every answer there is JSON, whatever the client accepts


def content_security_policy(app: Flask) -> str:
    """Nothing external loads; forms may only post here or to a CRM's sign-in page (the
    hosts of each CRM with a browser sign-in, from its spec, and any configured sandbox)."""
    form_targets = ["'self'"]
    for spec in registry.specs():
        if any(m.kind == "oauth2_code" for m in spec.auth_methods):
            form_targets += [f"https://{host}" for host in spec.allowed_hosts]
    sandboxes = app.config.get("SANDBOX_URLS") or {}
    form_targets += [str(url).rstrip("/") for url in sandboxes.values()]
    return "; ".join([
        "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
        "connect-src 'self'", "object-src 'none'", "base-uri 'none'",
        f"form-action {' '.join(form_targets)}", "frame-ancestors 'none'",
    ])


class RowIdConverter(IntegerConverter):
    """`<row_id:name>`: a database id, so at most 64 bits; a longer number is a 404 at
    routing, instead of overflowing the query (a 500)."""

    def __init__(self, url_map: Any) -> None:
        super().__init__(url_map, max=2**63 - 1)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
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
    warehouse.init_app(app)
    csrf.init_app(app)
    limiter.init_app(app)
    app.url_map.converters["row_id"] = RowIdConverter
    for blueprint in (views.bp, auth.bp, onboarding.bp, status.bp, integration.bp, people.bp,
                      results.bp, uploads.bp):
        app.register_blueprint(blueprint)
    # The API reads no cookie (bearer tokens only), so there is no session for CSRF to ride.
    csrf.exempt(api.bp)
    csrf.exempt(push.bp)  # signed by the sender (Standard Webhooks); no cookie is read
    for blueprint in (api.bp, api.tokens_bp, push.bp):
        app.register_blueprint(blueprint)
    headers = {
        "Content-Security-Policy": content_security_policy(app),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }
    if app.config["SESSION_COOKIE_SECURE"]:
        headers["Strict-Transport-Security"] = "max-age=31536000; includeSubDomains"

    @app.before_request
    def _load_user() -> None:
        if request.endpoint != "static":
            load_current_user()
            refuse_outside_role()

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        if g.get("user") is not None or request.method != "GET":
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"csrf_token_value": generate_csrf, "user": g.get("user")}

    def _error(code: int, title: str, message: str) -> tuple[Any, int]:
        if (request.accept_mimetypes.best == "application/json" or request.path.endswith(".json")
                or request.path.startswith(API_PREFIX)):
            return jsonify(error=title, message=message), code
        return render_template("error.html", title=title, message=message, back=None), code

    @app.errorhandler(CSRFError)
    def _csrf_error(_: CSRFError) -> tuple[Any, int]:
        return _error(400, "This form has expired",
                      "For your security the page was not submitted. Reload it and try again.")

    @app.errorhandler(404)
    def _not_found(_: HTTPException) -> tuple[Any, int]:
        return _error(404, "Page not found", "There is nothing at this address.")

    @app.errorhandler(429)
    def _too_many(_: HTTPException) -> tuple[Any, int]:
        return _error(429, "Too many attempts",
                      "Please wait a minute before trying again.")

    @app.errorhandler(413)
    def _too_large(_: HTTPException) -> tuple[Any, int]:
        limit = app.config["MAX_CONTENT_LENGTH"] // 1024
        return _error(413, "Too much data",
                      f"A form may send at most {limit} KB. Shorten what you entered.")

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Any, int]:
        """Every other HTTP error, as a page or as JSON for JSON callers."""
        return _error(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Any, int]:
        # Logged with its traceback (through the redacting filter); the person gets no detail.
        get_logger(__name__).exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, "Something went wrong",
                      "The error was logged. Try again; if it repeats, tell your Accrue contact.")

    return app
