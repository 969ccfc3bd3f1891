"""Accounts: sign-up confirmed by an e-mailed link, invitations, login and logout.

`views` (the pages), `forms` (the password rules), `email_links` (the single-use links
that prove an address; people's invitations use them too) and `login_guard` (failed
logins slow down per account and client). Sessions and passwords themselves are the
app's core (`onboarding_app.security`): every feature checks them.
"""

from flask import Blueprint

bp = Blueprint("auth", __name__, url_prefix="/auth")

from onboarding_app.auth import views  # noqa: E402,F401  (registers the routes)
