"""Status: after "Finish and Close", how far the syncs are and what comes next."""

from flask import Blueprint

bp = Blueprint("status", __name__, url_prefix="/status")

from onboarding_app.status import views  # noqa: E402,F401  (registers the routes)
