"""The concierge wizard: Welcome → Select CRM → Provide Details → Review → Terms → Complete.

Split by concern: `flow` (the steps, where the admin is, how a page renders),
`details` (credentials, OAuth and the connection test), `push_setup` (the push API's
setup page, a feed's Provide Details), `steps` (every other page) and `forms`. The
blueprint keeps its first name, `onboarding` (URLs under /onboarding, endpoints
`onboarding.*`); the names other features use are exported here. app.js only adds the
unsaved-changes prompts and an inline connection test.
"""

from __future__ import annotations

from flask import Blueprint

bp: Blueprint = Blueprint("onboarding", __name__, url_prefix="/onboarding")

from onboarding_app.wizard import details, push_setup, steps  # noqa: E402,F401 (the routes)
from onboarding_app.wizard.flow import (  # noqa: E402
    SETUP_MINUTES,
    STEP_TITLES,
    STEPS,
    login_landing,
)

__all__ = ["SETUP_MINUTES", "STEP_TITLES", "STEPS", "bp", "login_landing"]
