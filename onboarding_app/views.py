"""Public pages. The sign-up and setup wizard come with the concierge issue."""

from __future__ import annotations

from flask import Blueprint, jsonify, render_template
from sqlalchemy import text

from connectors.registry import PLANNED, supported_crms
from onboarding_app.extensions import warehouse

bp = Blueprint("main", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html", supported=supported_crms(), planned=PLANNED)


@bp.get("/healthz")
def healthz():  # noqa: ANN201 - Flask response
    with warehouse.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return jsonify(status="ok")
