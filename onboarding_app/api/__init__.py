"""The read-only results API for the customer's own BI tools, and its personal tokens.

Two blueprints: `bp` (`/api/v1`, JSON, authenticated by `Authorization: Bearer <token>`
only, so exempt from CSRF: no cookie is read) and `tokens_bp` (`/api-tokens`, the pages
where any logged-in person creates, lists and revokes their own tokens; forms with CSRF).
A token acts as its person: every read builds their `Scope` (`results.scope.scope_for`)
and goes through `results.queries`, exactly as their pages do.
"""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")
tokens_bp = Blueprint("api_tokens", __name__, url_prefix="/api-tokens")

from onboarding_app.api import token_pages, views  # noqa: E402,F401  (registers the routes)
