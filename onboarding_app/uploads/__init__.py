"""File uploads (issue 13, F9): a file-fed tenant's admin uploads CRM exports."""

from flask import Blueprint

bp = Blueprint("uploads", __name__, url_prefix="/uploads")

from onboarding_app.uploads import views  # noqa: E402,F401  (registers the routes)
