"""The security headers on every response: a CSP that loads nothing external, no framing,
no sniffing, and `no-store` for anything personal."""

from __future__ import annotations

from flask import Flask, Response, g, request

from connectors import registry


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


def register(app: Flask) -> None:
    """Stamp every response (a header a view set itself is kept)."""
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

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        if g.get("user") is not None or request.method != "GET":
            response.headers["Cache-Control"] = "no-store"
        return response
