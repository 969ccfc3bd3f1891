"""Sign-up, login and logout.

One message for an unknown e-mail and a wrong password (and the same work
for both, see security.verify_password); failed logins slow down per account and
client (login_guard), all logins are capped per address; every login starts a new
server-side session.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from onboarding_app import audit, login_guard, onboarding, store
from onboarding_app.extensions import limiter, warehouse
from onboarding_app.forms import ActionForm, LoginForm, SignupForm
from onboarding_app.security import (
    LOGIN_FAILED,
    end_all_sessions,
    end_session,
    get_logger,
    hash_password,
    safe_next,
    start_session,
    verify_password,
)

bp = Blueprint("auth", __name__, url_prefix="/auth")
logger = get_logger(__name__)


def _limit(name: str) -> str:
    return str(current_app.config[name])


def _after_login(tenant_id: str) -> str | None:
    """U1 and U5: arm the pop-up until setup is complete; the saved step to land on, if any.

    The pop-up shows on whichever page renders next: home (nothing saved yet)
    or the saved step, as "Welcome back" (see onboarding._render).
    """
    wizard = store.load_wizard(warehouse.engine, tenant_id)
    if wizard.complete:
        return None
    session["concierge_popup"] = True
    return onboarding.login_landing(tenant_id)


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(lambda: _limit("SIGNUP_LIMIT_PER_IP"), methods=["POST"])
def signup() -> ResponseReturnValue:
    form = SignupForm()
    if form.validate_on_submit():
        try:
            tenant_id, user_id = store.create_account(
                warehouse.engine, company=form.company.data or "",
                full_name=form.full_name.data or "", email=form.email.data or "",
                password_hash=hash_password(form.password.data or ""),
            )
        except store.EmailTaken:
            # Say so: sign-up cannot hide it anyway (the address must be unique).
            form.email.errors = ["An account with this e-mail exists: log in instead."]
            return render_template("auth/signup.html", form=form), 409
        start_session(user_id, tenant_id)
        audit.record(warehouse.engine, "account.created", tenant_id=tenant_id,
                     actor=f"user:{user_id}")
        _after_login(tenant_id)
        return redirect(url_for("main.home"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/signup.html", form=form), status


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: _limit("LOGIN_LIMIT_PER_IP"), methods=["POST"])
def login() -> ResponseReturnValue:
    form = LoginForm()
    if request.method == "GET":
        form.next.data = safe_next(request.args.get("next")) or ""
    if form.validate_on_submit():
        email = form.email.data or ""
        wait = login_guard.wait_seconds(email)
        if wait:
            form.password.data = ""
            error = f"Too many failed attempts: try again in {wait} seconds."
            response = current_app.make_response(
                (render_template("auth/login.html", form=form, error=error), 429))
            response.headers["Retry-After"] = str(wait)
            return response
        user = store.find_user(warehouse.engine, email)
        if verify_password(user.password_hash if user else None, form.password.data or ""):
            assert user is not None
            login_guard.record_success(email)
            start_session(user.id, user.tenant_id)
            audit.record(warehouse.engine, "login", tenant_id=user.tenant_id,
                         actor=f"user:{user.id}")
            landing = _after_login(user.tenant_id)
            # A page the admin asked for (?next=) wins; otherwise the saved step (U5).
            return redirect(safe_next(form.next.data) or landing or url_for("main.home"))
        login_guard.record_failure(email)
        audit.record(warehouse.engine, "login", outcome="failed",
                     tenant_id=user.tenant_id if user else None, actor="anonymous")
        form.password.data = ""
        return render_template("auth/login.html", form=form, error=LOGIN_FAILED), 401
    status = 400 if form.is_submitted() else 200
    return render_template("auth/login.html", form=form, error=None), status


@bp.post("/logout")
def logout() -> Response:
    form = ActionForm()
    form.validate_on_submit()  # CSRFProtect has already refused a missing or bad token
    user = g.get("user")
    if user is not None and request.form.get("everywhere"):
        audit.record(warehouse.engine, "logout.everywhere")
        ended = end_all_sessions(user.id)
        flash(f"You are logged out on every device ({ended} session"
              f"{'' if ended == 1 else 's'} ended).", "info")
        return redirect(url_for("auth.login"))
    if user is not None:
        audit.record(warehouse.engine, "logout")
    end_session()
    flash("You are logged out.", "info")
    return redirect(url_for("auth.login"))
