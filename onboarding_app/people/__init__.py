"""People: the admin invites the tenant's managers and sellers from the CRM's user list.

A person is invited as the CRM user they are, so what they may see follows the CRM:
a seller sees the deals they own, a manager those of everyone reporting to them
(`onboarding_app.results.scope`). The invitation is a single-use e-mailed link
(`email_links`, purpose `invite`) that expires after a week.
"""

from flask import Blueprint

bp = Blueprint("people", __name__, url_prefix="/people")

from onboarding_app.people import views  # noqa: E402,F401  (registers the routes)
