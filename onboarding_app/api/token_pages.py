"""The API tokens page: any logged-in person creates, lists and revokes their own tokens.

The new token is shown once, in the answer to the form that created it (never flashed:
flashed messages travel in the session cookie), and only its hash is kept. Creating and
revoking are audited by name and id, never with the token.
"""

from __future__ import annotations

from datetime import timedelta

from flask import abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length

from accrue.schema import utcnow
from onboarding_app import audit
from onboarding_app.api import tokens, tokens_bp
from onboarding_app.extensions import warehouse
from onboarding_app.forms import ActionForm
from onboarding_app.security import current_user, external_url, login_required

EXPIRY_CHOICES = [("30", "In 30 days"), ("90", "In 90 days"), ("365", "In a year"),
                  ("never", "Never (until revoked)")]


class NewTokenForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)],
                       description="What uses it, e.g. \u201cPower BI, sales dashboard\u201d.")
    expires = SelectField("Expires", choices=EXPIRY_CHOICES, default="90")


def _page(form: NewTokenForm, new_token: str | None = None) -> str:
    user = current_user()
    return render_template(
        "api/tokens.html", form=form, action_form=ActionForm(), new_token=new_token,
        tokens=tokens.listing(warehouse.engine, user), limit=tokens.MAX_ACTIVE_TOKENS,
        api_base=external_url("api.freshness").rsplit("/", 1)[0])


@tokens_bp.get("/")
@login_required
def index() -> ResponseReturnValue:
    return _page(NewTokenForm())


@tokens_bp.post("/")
@login_required
def create() -> ResponseReturnValue:
    form = NewTokenForm()
    if not form.validate_on_submit():
        return _page(form), 400
    user = current_user()
    if tokens.active_count(warehouse.engine, user.id) >= tokens.MAX_ACTIVE_TOKENS:
        flash(f"You have {tokens.MAX_ACTIVE_TOKENS} active tokens: revoke one you no longer "
              "use first.", "error")
        return _page(form), 400
    days = form.expires.data
    expires_at = None if days == "never" else utcnow() + timedelta(days=int(days or 90))
    token_id, token = tokens.issue(warehouse.engine, user, form.name.data or "", expires_at)
    audit.record(warehouse.engine, "api_token.created", detail={
        "id": token_id, "name": (form.name.data or "").strip()[:100],
        "expires_at": expires_at.isoformat() if expires_at else None})
    # The only time the value is shown: rendered, not redirected (no-store, see create_app).
    return _page(NewTokenForm(formdata=None), new_token=token)


@tokens_bp.post("/<row_id:token_id>/revoke")
@login_required
def revoke(token_id: int) -> ResponseReturnValue:
    ActionForm().validate_on_submit()  # CSRFProtect has already refused a bad token
    revoked = tokens.revoke(warehouse.engine, current_user(), token_id)
    if revoked is None:
        abort(404)  # not this person's token
    audit.record(warehouse.engine, "api_token.revoked", detail=revoked)
    flash(f"Token \u201c{revoked['name']}\u201d revoked: it no longer works.", "info")
    return redirect(url_for("api_tokens.index"))
