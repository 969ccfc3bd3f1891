"""Integration settings: what the tenant's admin manages after setup (issue 11, part 2).

Pause and resume, the sync frequency, the optional imports, signing in to the CRM again,
"Sync now", the sync history in plain words, and disconnecting. Everything acts on the logged-in
admin's own tenant (no tenant or connection id is ever taken from the request), and
every change goes to the audit trail.

Who may manage is decided in one place, `may_manage`: today every account is the
admin of its tenant; once accounts carry a role, only `admin` passes.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, redirect, request, url_for
from flask.typing import ResponseReturnValue

from accrue import tenants
from accrue.file_import.feed import FILE_CRM_TYPE
from accrue.push import PUSH_CRM_TYPE
from onboarding_app import store
from onboarding_app.extensions import warehouse
from onboarding_app.security import current_user, login_required

bp = Blueprint("integration", __name__, url_prefix="/integration")
PUSH_PAGES = "integration.push_"  # a push tenant's settings (integration.push)


def may_manage(user: Any) -> bool:
    """Whether this account manages its tenant's integration: its admins only.

    Accounts without a role (all of them, until roles exist) set the integration up,
    so they are admins; a `role` attribute on the current user, once there, decides.
    """
    return str(getattr(user, "role", "admin")) == "admin"


def setup_complete(tenant_id: str) -> bool:
    return store.load_wizard(warehouse.engine, tenant_id).complete


@bp.before_request
@login_required
def _admins_after_setup() -> ResponseReturnValue | None:
    """Logged out: the login page (login_required). Not an admin: 403. Setup not finished:
    the wizard, where the integration is still being set up."""
    user = current_user()
    if not may_manage(user):
        abort(403)
    if not setup_complete(user.tenant_id):
        return redirect(url_for("onboarding.resume"))
    crm_type = tenants.require_tenant(warehouse.engine, user.tenant_id).crm_type
    if crm_type == PUSH_CRM_TYPE and not (request.endpoint or "").startswith(PUSH_PAGES):
        # No CRM connection to manage: the push API's page instead (never a 500).
        return redirect(url_for("integration.push_page"))
    if crm_type == FILE_CRM_TYPE:
        return redirect(url_for("uploads.index"))  # a file tenant's settings: its uploads
    return None


@bp.app_context_processor
def _menu() -> dict[str, Any]:
    """`integration_menu()`: whether the header shows the settings gear (asked lazily, so
    pages rendered for nobody logged in cost no query)."""

    def integration_menu() -> bool:
        user = g.get("user")
        return user is not None and may_manage(user) and setup_complete(user.tenant_id)

    return {"integration_menu": integration_menu}


from onboarding_app.integration import (  # noqa: E402,F401  (registers the routes)
    push,
    push_schema,
    views,
)
