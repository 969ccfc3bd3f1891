"""Sign-up (confirmed by an e-mailed link, see email_links), login and logout.

One message for an unknown e-mail and a wrong password (and the same work
for both, see security.verify_password); failed logins slow down per account and
client (login_guard), all logins are capped per address; every login starts a new
server-side session.
"""

from __future__ import annotations

from flask import (
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

from accrue import tenants
from onboarding_app import audit, notify, store
from onboarding_app.auth import bp, email_links, login_guard
from onboarding_app.auth.forms import AcceptInvitationForm, LoginForm, SignupForm
from onboarding_app.extensions import limiter, warehouse
from onboarding_app.forms import ActionForm
from onboarding_app.logs import get_logger
from onboarding_app.security import (
    LOGIN_FAILED,
    end_all_sessions,
    end_session,
    external_url,
    hash_password,
    safe_next,
    start_session,
    verify_password,
)
from onboarding_app.wizard import login_landing

logger = get_logger(__name__)


def _limit(name: str) -> str:
    return str(current_app.config[name])


def _after_login(tenant_id: str, role: str = "admin") -> str | None:
    """U1 and U5: arm the pop-up until setup is complete; the saved step to land on, if any.

    The pop-up shows on whichever page renders next: home (nothing saved yet)
    or the saved step, as "Welcome back" (see wizard.flow.render). Setup is the
    admin's: managers and sellers land on home.
    """
    if role != "admin":
        return None
    wizard = store.load_wizard(warehouse.engine, tenant_id)
    if wizard.complete:
        return None
    session["concierge_popup"] = True
    return login_landing(tenant_id)


@bp.route("/signup", methods=["GET", "POST"])
@limiter.limit(lambda: _limit("SIGNUP_LIMIT_PER_IP"), methods=["POST"])
def signup() -> ResponseReturnValue:
    """Mail a confirmation link (or, for a known address, a notice); the same page either way."""
    form = SignupForm()
    if form.validate_on_submit():
        email = store.normalise_email(form.email.data or "")
        # Hashed for both kinds of address: the same work, the same time.
        password_hash = hash_password(form.password.data or "")
        known = store.find_user(warehouse.engine, email) is not None
        if not email_links.may_send(warehouse.engine, email):
            mail = "capped"
        elif known:
            email_links.issue(warehouse.engine, email_links.SIGNUP_NOTICE, email)
            notify.send(email, "You already have an Accrue account", "already_registered.txt",
                        login_url=external_url("auth.login"))
            mail = "notice"
        else:
            token = email_links.issue(warehouse.engine, email_links.SIGNUP, email, {
                "company": form.company.data or "", "full_name": form.full_name.data or "",
                "password_hash": password_hash})
            notify.send(email, "Confirm your e-mail to create your Accrue account",
                        "confirm_signup.txt", name=form.full_name.data or "",
                        confirm_url=external_url("auth.confirm", token=token),
                        hours=int(email_links.SIGNUP_TTL.total_seconds() // 3600))
            mail = "confirmation"
        audit.record(warehouse.engine, "signup.requested", actor="anonymous",
                     detail={"mail": mail})
        session["signup_sent_to"] = email
        return redirect(url_for("auth.signup_sent"))
    status = 400 if form.is_submitted() else 200
    return render_template("auth/signup.html", form=form), status


@bp.get("/signup/sent")
def signup_sent() -> ResponseReturnValue:
    email = session.get("signup_sent_to")
    if not isinstance(email, str):
        return redirect(url_for("auth.signup"))
    mail_off = not current_app.config.get("SMTP_HOST")
    return render_template("auth/signup_sent.html", email=email, mail_off=mail_off,
                           hours=int(email_links.SIGNUP_TTL.total_seconds() // 3600),
                           per_hour=email_links.MAX_PER_ADDRESS_PER_HOUR)


@bp.route("/confirm/<token>", methods=["GET", "POST"])
@limiter.limit(lambda: _limit("LOGIN_LIMIT_PER_IP"), methods=["POST"])
def confirm(token: str) -> ResponseReturnValue:
    """GET shows what the link does (mail scanners follow links); POST creates the account."""
    form = ActionForm()
    if request.method == "GET":
        link = email_links.peek(warehouse.engine, token, email_links.SIGNUP)
        if link is None:
            return render_template("auth/link_invalid.html"), 404
        return render_template("auth/confirm.html", form=form, email=link.email,
                               company=link.payload.get("company", ""))
    form.validate_on_submit()  # CSRFProtect has already refused a missing or bad token
    link = email_links.redeem(warehouse.engine, token, email_links.SIGNUP)
    if link is None:
        return render_template("auth/link_invalid.html"), 404
    try:
        tenant_id, user_id = store.create_account(
            warehouse.engine, company=str(link.payload.get("company", "")),
            full_name=str(link.payload.get("full_name", "")), email=link.email,
            password_hash=str(link.payload["password_hash"]),
        )
    except store.EmailTaken:
        # Only the mailbox's owner gets here: telling them is no disclosure.
        flash("An account with this e-mail exists already: log in.", "info")
        return redirect(url_for("auth.login"))
    session.pop("signup_sent_to", None)
    start_session(user_id, tenant_id)
    audit.record(warehouse.engine, "account.created", tenant_id=tenant_id,
                 actor=f"user:{user_id}")
    _after_login(tenant_id)
    return redirect(url_for("main.home"))


@bp.route("/invitation/<token>", methods=["GET", "POST"])
@limiter.limit(lambda: _limit("LOGIN_LIMIT_PER_IP"), methods=["POST"])
def invitation(token: str) -> ResponseReturnValue:
    """An invited manager or seller sets a password; the account is tied to their CRM user."""
    link = email_links.peek(warehouse.engine, token, email_links.INVITE)
    if link is None or link.tenant_id is None:
        return render_template("auth/link_invalid.html"), 404
    tenant = tenants.get_tenant(warehouse.engine, link.tenant_id)
    if tenant is None or tenant.status == "deleted":
        return render_template("auth/link_invalid.html"), 404
    form = AcceptInvitationForm(email=link.email)
    if request.method == "GET":
        form.full_name.data = str(link.payload.get("full_name", ""))
    elif form.validate_on_submit():
        # Used up only now: a mistyped password does not cost the person their link.
        if email_links.redeem(warehouse.engine, token, email_links.INVITE) is None:
            return render_template("auth/link_invalid.html"), 404
        try:
            user_id = store.create_member(
                warehouse.engine, tenant_id=tenant.id, email=link.email,
                full_name=form.full_name.data or "", password_hash=hash_password(
                    form.password.data or ""),
                role=str(link.payload["role"]), crm_user_id=str(link.payload["crm_user_id"]))
        except store.EmailTaken:
            flash("This e-mail, or this CRM user, has an Accrue account already: log in.", "info")
            return redirect(url_for("auth.login"))
        start_session(user_id, tenant.id)
        audit.record(warehouse.engine, "invitation.accepted", tenant_id=tenant.id,
                     actor=f"user:{user_id}", detail={"role": link.payload["role"]})
        return redirect(url_for("main.home"))
    status = 400 if form.is_submitted() else 200
    return render_template(
        "auth/invitation.html", form=form, email=link.email, company=tenant.name,
        inviter=link.payload.get("invited_by", "Your admin"), role=link.payload.get("role"),
    ), status


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
            landing = _after_login(user.tenant_id, user.role)
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
