"""Logs that never carry a credential: every concierge logger, and the request log, pass
a filter that scrubs OAuth codes, passwords, bearer and link tokens (S1, second line of
defence; the first is not logging secrets at all)."""

from __future__ import annotations

import logging
import re
import traceback

from accrue import crypto

_OAUTH_QUERY = re.compile(r"\b(code|state|code_verifier)=[^&\s\"']+", re.I)
# An e-mailed link's token in a request line (GET /auth/confirm/<token>, invitations).
_LINK_TOKEN = re.compile(r"(/auth/(?:confirm|invitation)/)[A-Za-z0-9_-]+")


class RedactingFilter(logging.Filter):
    """Scrubs credentials from every record a handler emits (S1, second line of defence).

    The first line is not logging secrets at all; this catches the rest: OAuth
    codes in request lines, `password=...`, bearer tokens, sealed tokens.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not record.exc_text:
            # A traceback quotes exception messages (a driver's error may hold a DSN):
            # formatted and scrubbed here, the formatter then uses this text as it is.
            record.exc_text = _scrub("".join(traceback.format_exception(*record.exc_info))).rstrip()
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record must still be logged
            return True
        cleaned = _scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def _scrub(text: str) -> str:
    text = _OAUTH_QUERY.sub(lambda m: f"{m.group(1)}=[REDACTED]", crypto.redact(text))
    return _LINK_TOKEN.sub(r"\1[REDACTED]", text)


def get_logger(name: str) -> logging.Logger:
    """A module logger whose records are redacted before any handler sees them."""
    log = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in log.filters):
        log.addFilter(RedactingFilter())
    return log


def install_log_redaction() -> None:
    """Redact the request log (werkzeug) and whatever reaches the root handlers.

    Logger filters do not apply to records propagated from child loggers, so
    the root's handlers get the filter too; our own modules use `get_logger`.
    """
    for name in ("werkzeug", "flask.app"):
        get_logger(name)
    root = logging.getLogger()
    get_logger("")
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
