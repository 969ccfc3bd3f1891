"""E-mails the concierge sends, rendered from its templates: sign-up links, setup complete.

SMTP settings come from the environment (ACCRUE_SMTP_*), and the hand-over
is `accrue.onboarding_notify.send_email`, the one SMTP client shared with the
pipelines (which send "first data is ready"). Sending is best-effort: a mail
server that is down must not undo a finished setup, so failures are logged
and audited by the caller.

Every message is announced on `email_composed` before it is handed over (as
Flask-Mail's `email_dispatched`), so tests and tools can read what was sent
without an SMTP server. In development with no SMTP host the message is
printed to the console instead (production refuses to start without one:
sign-up depends on e-mail).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from blinker import Namespace
from flask import current_app, render_template

from accrue.onboarding_notify import SmtpSettings, send_email
from onboarding_app.logs import get_logger

logger = get_logger(__name__)
_signals = Namespace()
email_composed = _signals.signal("email-composed")


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    body: str


def send(to: str, subject: str, template: str, **context: Any) -> bool:
    """Send one plain-text e-mail rendered from templates/email/; True when handed over."""
    message = Email(to, subject, render_template(f"email/{template}", **context))
    email_composed.send(current_app._get_current_object(),  # type: ignore[attr-defined]
                        message=message)
    settings = SmtpSettings.from_config(current_app.config)
    if settings.host:
        return send_email(settings, message.to, message.subject, message.body)
    if current_app.config.get("ENV_NAME") == "development":
        # Like Django's console backend: a laptop without a mail server still signs up.
        print(f"--- e-mail (no ACCRUE_SMTP_HOST, printed instead of sent) ---\n"
              f"To: {message.to}\nSubject: {message.subject}\n\n{message.body}\n---",
              file=sys.stderr, flush=True)
    else:
        logger.info("no SMTP host configured: not sending %r", subject)
    return False
