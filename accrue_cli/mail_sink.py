"""The demo's mail server: an SMTP sink and a page that shows what it caught.

Sign-up is confirmed by an e-mailed link and the pipelines e-mail "first data is
ready", so a demo without mail would stop at the first step. `make demo` runs this
(`accrue mail-sink`) and points the concierge and Dagster at it with ACCRUE_SMTP_*,
as production points them at a real server; nothing leaves the machine. Like
MailHog or Mailpit, but two small pieces we already ship: aiosmtpd receives, a
Maildir keeps every message (it survives restarts and can be read with any mail
tool), and a Flask page lists them with their links clickable.
"""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiosmtpd.controller import Controller
    from flask import Flask

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Demo inbox ({{ mails|length }})</title>
<meta http-equiv="refresh" content="10">
<style>
 body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem;
        color: #1f2933; }
 table { border-collapse: collapse; width: 100%; }
 td, th { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #d9e2ec; }
 pre { white-space: pre-wrap; background: #f5f7fa; padding: 1rem; border-radius: 6px; }
 .muted { color: #52606d; }
</style></head><body>
<h1>Demo inbox</h1>
<p class="muted">Every e-mail the demo's concierge and pipelines sent (SMTP on port
{{ smtp_port }}); nothing leaves this machine. Newest first; the page refreshes itself.</p>
{% if mails %}
<table><thead><tr><th>Received</th><th>To</th><th>Subject</th></tr></thead><tbody>
{% for m in mails %}<tr><td>{{ m.received }}</td><td>{{ m.to }}</td>
<td><a href="{{ url_for('message', key=m.key) }}">{{ m.subject }}</a></td></tr>{% endfor %}
</tbody></table>
{% else %}<p>No e-mail yet. Sign up in the concierge and the confirmation arrives here.</p>
{% endif %}
</body></html>"""

MESSAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ m.subject }}</title>
<style> body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 60rem; }
 pre { white-space: pre-wrap; background: #f5f7fa; padding: 1rem; border-radius: 6px; } </style>
</head><body>
<p><a href="{{ url_for('inbox') }}">← Demo inbox</a></p>
<h1>{{ m.subject }}</h1>
<p>From {{ m.sender }} to {{ m.to }}, received {{ m.received }}</p>
<pre>{{ m.body|urlize }}</pre>
</body></html>"""


@dataclass(frozen=True)
class CaughtMail:
    key: str
    received: str
    sender: str
    to: str
    subject: str
    body: str


class MaildirHandler:
    """aiosmtpd handler: every message accepted goes into the Maildir, as received."""

    def __init__(self, maildir: Path) -> None:
        self.box = mailbox.Maildir(maildir, create=True)

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:  # noqa: N802
        message = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        if "Date" not in message:
            message["Date"] = datetime.now(UTC)
        self.box.add(message)
        return "250 Message accepted for delivery"


def read_mails(maildir: Path) -> list[CaughtMail]:
    """Every caught message, newest first."""
    box = mailbox.Maildir(maildir, create=True)
    found = []
    for key in list(box.iterkeys()):
        message = BytesParser(policy=policy.default).parsebytes(box.get_bytes(key))
        assert isinstance(message, EmailMessage)
        part = message.get_body(preferencelist=("plain", "html"))
        date = parsedate_to_datetime(str(message["Date"])) if message["Date"] else None
        found.append(CaughtMail(
            key=key, received=date.strftime("%Y-%m-%d %H:%M:%S") if date else "",
            sender=str(message["From"] or ""), to=str(message["To"] or ""),
            subject=str(message["Subject"] or "(no subject)"),
            body=part.get_content() if part is not None else "",
        ))
    return sorted(found, key=lambda m: m.received, reverse=True)


def create_inbox_app(maildir: Path, smtp_port: int) -> Flask:
    from flask import Flask, abort, render_template_string

    app = Flask(__name__)

    @app.get("/")
    def inbox() -> str:
        return render_template_string(PAGE, mails=read_mails(maildir), smtp_port=smtp_port)

    @app.get("/messages/<key>")
    def message(key: str) -> str:
        for mail in read_mails(maildir):
            if mail.key == key:
                return render_template_string(MESSAGE, m=mail)
        abort(404)

    @app.get("/messages.json")
    def messages_json() -> Any:
        return [mail.__dict__ for mail in read_mails(maildir)]

    return app


def start_smtp(maildir: Path, host: str, port: int) -> Controller:
    """Receive on host:port in a background thread until `.stop()`."""
    from aiosmtpd.controller import Controller

    controller = Controller(MaildirHandler(maildir), hostname=host, port=port)
    controller.start()
    return controller


def serve(maildir: Path, host: str, smtp_port: int, http_port: int) -> None:
    """SMTP and the inbox page until the process is stopped (SIGTERM or Ctrl-C)."""
    from connectors.sandbox_kit.server import make_sandbox_server, serve_blocking

    controller = start_smtp(maildir, host, smtp_port)
    try:
        serve_blocking(make_sandbox_server(create_inbox_app(maildir, smtp_port), host,
                                           http_port, quiet=False))
    finally:
        controller.stop()
