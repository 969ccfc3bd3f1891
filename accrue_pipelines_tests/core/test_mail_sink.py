"""The demo's mail sink: what our SMTP client sends is kept and readable, links clickable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from accrue.onboarding_notify import SmtpSettings, send_email
from accrue_cli.mail_sink import create_inbox_app, read_mails, start_smtp
from accrue_pipelines_tests.concierge.test_concierge_status import _free_port


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[Path, SmtpSettings]]:
    maildir = tmp_path / "mail"
    port = _free_port()
    controller = start_smtp(maildir, "127.0.0.1", port)
    try:
        yield maildir, SmtpSettings(host="127.0.0.1", port=port, mail_from="Accrue <a@x.test>")
    finally:
        controller.stop()


def test_a_sent_mail_is_kept_and_shown_with_its_link_clickable(
    sink: tuple[Path, SmtpSettings]
) -> None:
    maildir, settings = sink
    link = "http://127.0.0.1:5050/auth/confirm/AbC_12-xyz"
    assert send_email(settings, "ana@example.com", "Confirm <your> e-mail",
                      f"Open this:\n\n{link}\n")
    [mail] = read_mails(maildir)
    assert (mail.to, mail.subject) == ("ana@example.com", "Confirm <your> e-mail")
    assert link in mail.body

    client = create_inbox_app(maildir, settings.port).test_client()
    listing = client.get("/").get_data(as_text=True)
    assert "Confirm &lt;your&gt; e-mail" in listing and "<your>" not in listing  # escaped
    page = client.get(f"/messages/{mail.key}").get_data(as_text=True)
    assert f'<a href="{link}"' in page
    assert client.get("/messages.json").get_json()[0]["to"] == "ana@example.com"
    assert client.get("/messages/no-such-key").status_code == 404


def test_mail_survives_a_restart_of_the_sink(
    tmp_path: Path
) -> None:
    maildir = tmp_path / "mail"
    for subject in ("first", "second"):
        port = _free_port()
        controller = start_smtp(maildir, "127.0.0.1", port)
        try:
            assert send_email(SmtpSettings(host="127.0.0.1", port=port), "b@example.com",
                              subject, "body")
        finally:
            controller.stop()
    subjects = [m.subject for m in read_mails(maildir)]
    assert sorted(subjects) == ["first", "second"]
    assert len(list(maildir.glob("new/*"))) == 2  # a plain Maildir any mail tool reads
