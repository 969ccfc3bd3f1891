"""The people page: invite a CRM user as manager or seller, see who has access, remove it."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from onboarding_app import audit, notify, store
from onboarding_app.auth import email_links
from onboarding_app.extensions import warehouse
from onboarding_app.forms import ActionForm
from onboarding_app.people import bp
from onboarding_app.people.directory import crm_people, crm_person
from onboarding_app.security import admin_required, current_user, external_url

INVITABLE_ROLES = ("manager", "seller")


@bp.get("/")
@admin_required
def index() -> ResponseReturnValue:
    tenant_id = current_user().tenant_id
    people = crm_people(warehouse.engine, tenant_id)
    admins = [m for m in store.members(warehouse.engine, tenant_id) if m.role == "admin"]
    return render_template("people/index.html", people=people, admins=admins,
                           form=ActionForm(), days=email_links.INVITE_TTL.days)


@bp.post("/invite")
@admin_required
def invite() -> ResponseReturnValue:
    """Mail a single-use invitation to the CRM user's address (the CRM's, not typed)."""
    form = ActionForm()
    form.validate_on_submit()  # CSRFProtect has already refused a missing or bad token
    user = current_user()
    role = request.form.get("role", "")
    person = crm_person(warehouse.engine, user.tenant_id, request.form.get("crm_user_id", ""))
    if person is None or role not in INVITABLE_ROLES:
        abort(404)  # not this tenant's CRM user: nothing to say about it
    if person.account_role is not None:
        flash(f"{person.name} already has access as {person.account_role}.", "info")
        return redirect(url_for("people.index"))
    if not person.email:
        flash(f"{person.name} has no e-mail address in the CRM: add one there first.", "error")
        return redirect(url_for("people.index"))
    if not email_links.may_send(warehouse.engine, person.email):
        flash(f"{person.name} was sent several e-mails in the last hour: try again later.",
              "error")
        return redirect(url_for("people.index"))
    token = email_links.issue(
        warehouse.engine, email_links.INVITE, person.email,
        {"role": role, "crm_user_id": person.crm_user_id, "full_name": person.name,
         "invited_by": user.full_name},
        ttl=email_links.INVITE_TTL, tenant_id=user.tenant_id)
    sent = notify.send(person.email, f"{user.full_name} invited you to Accrue", "invitation.txt",
                       name=person.name, inviter=user.full_name, role=role,
                       accept_url=external_url("auth.invitation", token=token),
                       days=email_links.INVITE_TTL.days)
    audit.record(warehouse.engine, "people.invited", tenant_id=user.tenant_id,
                 detail={"role": role, "crm_user_id": person.crm_user_id, "mailed": sent})
    flash(f"Invitation sent to {person.name} ({person.email}) as {role}."
          if sent else f"Invitation for {person.name} created, but no e-mail could be sent: "
                       "check the mail settings.", "info" if sent else "error")
    return redirect(url_for("people.index"))


@bp.post("/remove/<row_id:user_id>")
@admin_required
def remove(user_id: int) -> ResponseReturnValue:
    """End a manager's or seller's access at once (their sessions go with the account)."""
    form = ActionForm()
    form.validate_on_submit()
    tenant_id = current_user().tenant_id
    if not store.remove_member(warehouse.engine, tenant_id, user_id):
        abort(404)
    audit.record(warehouse.engine, "people.removed", tenant_id=tenant_id,
                 detail={"user_id": user_id})
    flash("Access removed.", "info")
    return redirect(url_for("people.index"))
