"""The concierge wizard: Welcome → Select CRM → Provide Details → Review → Terms → Complete.

Split by concern: `flow` (the steps, where the admin is, how a page renders),
`details` (credentials, OAuth and the connection test) and `steps` (every other
page). The blueprint, its URLs and endpoint names are those of the one module
this package replaced; the names other modules use are re-exported here. app.js
only adds the unsaved-changes prompts and an inline connection test.
"""

from __future__ import annotations

from onboarding_app.onboarding import details, push_setup, steps  # noqa: F401 - registers the routes
from onboarding_app.onboarding.details import run_test
from onboarding_app.onboarding.flow import (
    SETUP_MINUTES,
    STEP_ENDPOINTS,
    STEP_TITLES,
    STEPS,
    bp,
    furthest_step,
    login_landing,
    saved_step,
)

__all__ = [
    "SETUP_MINUTES", "STEP_ENDPOINTS", "STEP_TITLES",
    "STEPS", "bp", "furthest_step", "login_landing", "run_test", "saved_step",
]
