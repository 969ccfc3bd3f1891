"""The public landing page, the health check, and the product's home after login (U1)."""

from flask import Blueprint

bp = Blueprint("main", __name__)

from onboarding_app.main import views  # noqa: E402,F401  (registers the routes)
