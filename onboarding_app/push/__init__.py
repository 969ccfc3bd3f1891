"""The push API (issue 13, F8): `POST /v1/push/<tenant>/records`, JSON only, and its
OpenAPI description at `GET /v1/push/openapi.json`.

Authenticated by the tenant's push client id (`Accrue-Client-Id`) and a Standard
Webhooks signature, never by a cookie, so exempt from CSRF. See onboarding_app.push.views.
"""

from flask import Blueprint

bp = Blueprint("push", __name__, url_prefix="/v1/push")

from onboarding_app.push import describe, views  # noqa: E402,F401  (registers the routes)
