"""E-mails to the admin rendered from the app's templates: setup complete.

SMTP settings come from the environment (ACCRUE_SMTP_*), and the hand-over
is `accrue.onboarding_notify.send_email`, the one SMTP client shared with the
pipelines (which send "first data is ready"). Sending is best-effort: a mail
server that is down must not undo a finished setup, so failures are logged
and audited by the caller.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template

from accrue.onboarding_notify import SmtpSettings, send_email
from onboarding_app.security import get_logger

logger = get_logger(__name__)


def send(to: str, subject: str, template: str, **context: Any) -> bool:
    """Send one plain-text e-mail rendered from templates/email/; True when handed over."""
    settings = SmtpSettings.from_config(current_app.config)
    if not settings.host:
        logger.info("no SMTP host configured: not sending %r", subject)
        return False
    return send_email(settings, to, subject, render_template(f"email/{template}", **context))
