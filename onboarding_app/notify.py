"""E-mails to the admin: setup complete, first data ready.

SMTP settings come from the environment (ACCRUE_SMTP_*). Sending is
best-effort: a mail server that is down must not undo a finished setup, so
failures are logged (without addresses' passwords, of course) and audited.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from flask import current_app, render_template

from onboarding_app.security import get_logger

logger = get_logger(__name__)


def send(to: str, subject: str, template: str, **context: Any) -> bool:
    """Send one plain-text e-mail rendered from templates/email/; True when handed over."""
    config = current_app.config
    host = config.get("SMTP_HOST")
    if not host:
        logger.info("no SMTP host configured: not sending %r", subject)
        return False
    message = EmailMessage()
    message["From"] = config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    message.set_content(render_template(f"email/{template}", **context))
    port = int(config["SMTP_PORT"])
    try:
        if config.get("SMTP_SSL"):
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                host, port, timeout=10, context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(host, port, timeout=10)
        with client:
            if config.get("SMTP_STARTTLS"):
                client.starttls(context=ssl.create_default_context())
            if config.get("SMTP_USERNAME"):
                client.login(config["SMTP_USERNAME"], config.get("SMTP_PASSWORD") or "")
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        logger.warning("could not send %r: %s", subject, type(exc).__name__)
        return False
    return True
