"""The "first data is ready" milestone and its e-mail, shared by the concierge and the pipelines.

Imports neither Flask nor Dagster, so the status page (`onboarding_app.status`)
and the Dagster sensor (`accrue_pipelines.onboarding.sensors`) use this one
implementation: "first data is in" means the same thing to both, and the
e-mail goes out once, whoever notices the milestone first.

Delivery is at most once per milestone, with retries for failures we can see:
the "notified" mark is claimed (a conditional UPDATE, atomic on SQLite and
PostgreSQL) and committed *before* the SMTP hand-over, so two callers racing
(the admin's 5-second refresh and the sensor) or a retried tick never send
twice. If the server refuses or cannot be reached, the claim is released and
a later check retries (after `RETRY_AFTER`); only a process dying between the
commit and the hand-over loses the e-mail, and the status page still says
"Ready." then. A duplicate is the worse failure for a message promised once,
and a retry after an ambiguous hand-over (a timeout after DATA) reuses the
same Message-ID, which mail clients collapse.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import jinja2
import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping

from accrue import audit, recommendation_status, sync_progress, tenants
from accrue import onboarding_state as saved_progress
from accrue.schema import (
    app_user,
    audit_event,
    onboarding_state,
    price_recommendation,
    utcnow,
)
from accrue.schema import tenant as tenant_table
from accrue.warehouse import Warehouse
from accrue.warehouse.runs import succeeded_sync_exists

FIRST_DATA_SUBJECT = "Your first Accrue data is ready"
FIRST_DATA_ACTION = "email.first_data"
# After a failed hand-over, wait this long before trying again (the page polls every 5 s).
RETRY_AFTER = timedelta(minutes=5)
SMTP_TIMEOUT_SECONDS = 10
TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_FROM = "Accrue <concierge@accrue.local>"

logger = logging.getLogger(__name__)


# -- SMTP ---------------------------------------------------------------------------------


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def _flag(name: str) -> bool:
    return (_env(name) or "").lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class SmtpSettings:
    """Where e-mail goes; `host=None` means e-mail is off (nothing is sent or claimed)."""

    host: str | None
    port: int = 25
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    use_ssl: bool = False
    mail_from: str = DEFAULT_FROM

    @classmethod
    def from_env(cls) -> SmtpSettings:
        """ACCRUE_SMTP_* and ACCRUE_MAIL_FROM: the same variables for the app and Dagster."""
        return cls(
            host=_env("ACCRUE_SMTP_HOST"),
            port=int(_env("ACCRUE_SMTP_PORT", "25") or 25),
            username=_env("ACCRUE_SMTP_USERNAME"),
            password=_env("ACCRUE_SMTP_PASSWORD"),
            starttls=_flag("ACCRUE_SMTP_STARTTLS"),
            use_ssl=_flag("ACCRUE_SMTP_SSL"),
            mail_from=_env("ACCRUE_MAIL_FROM", DEFAULT_FROM) or DEFAULT_FROM,
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> SmtpSettings:
        """The Flask app's SMTP_* keys (tests and operators may override them per app)."""
        return cls(
            host=config.get("SMTP_HOST") or None,
            port=int(config.get("SMTP_PORT") or 25),
            username=config.get("SMTP_USERNAME") or None,
            password=config.get("SMTP_PASSWORD") or None,
            starttls=bool(config.get("SMTP_STARTTLS")),
            use_ssl=bool(config.get("SMTP_SSL")),
            mail_from=config.get("MAIL_FROM") or DEFAULT_FROM,
        )


def send_email(settings: SmtpSettings, to: str, subject: str, body: str,
               *, message_id: str | None = None) -> bool:
    """Hand one plain-text e-mail to the SMTP server; True when it accepted it.

    Never raises for mail trouble: a server that is down must not undo a
    finished setup or fail a sensor tick. Only the error's type is logged.
    """
    if not settings.host:
        return False
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    if message_id:
        message["Message-ID"] = message_id
    message.set_content(body)
    try:
        if settings.use_ssl:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=SMTP_TIMEOUT_SECONDS,
                context=ssl.create_default_context())
        else:
            client = smtplib.SMTP(settings.host, settings.port, timeout=SMTP_TIMEOUT_SECONDS)
        with client:
            if settings.starttls:
                client.starttls(context=ssl.create_default_context())
            if settings.username:
                client.login(settings.username, settings.password or "")
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        logger.warning("could not send %r: %s", subject, type(exc).__name__)
        return False
    return True


def public_status_url() -> str | None:
    """The status page's address for e-mails sent outside a request (ACCRUE_APP_PUBLIC_URL)."""
    base = _env("ACCRUE_APP_PUBLIC_URL")
    return f"{base.rstrip('/')}/status" if base else None


_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False,
    undefined=jinja2.StrictUndefined,
)


def render(template: str, **context: Any) -> str:
    """A plain-text e-mail body from accrue/templates/email/ (no Flask needed)."""
    return _templates.get_template(f"email/{template}").render(**context)


# -- the milestone ------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _wizard_row(engine: Engine, tenant_id: str) -> RowMapping | None:
    query = sa.select(onboarding_state.c.data, onboarding_state.c.started_at,
                      onboarding_state.c.completed_at).where(
        onboarding_state.c.tenant_id == tenant_id)
    with engine.connect() as conn:
        return conn.execute(query).mappings().first()


def progress(engine: Engine, tenant_id: str, now: datetime | None = None) -> dict[str, Any]:
    """Per-object progress and the two milestones: first data, first recommendations.

    Expected objects are the ones the CRM reported at setup (the wizard's
    discovery) that the tenant syncs (an optional import only if its admin chose
    it); first data is in when each has had a successful sync (a later
    failed or running sync does not take it back). The words per object come from
    `sync_progress`, the recommendations' from `recommendation_status`.
    """
    now = now or utcnow()
    row = _wizard_row(engine, tenant_id)
    data = dict(row["data"] or {}) if row else {}
    started_at = row["started_at"] if row else None
    completed_at = row["completed_at"] if row else None
    tenant = tenants.require_tenant(engine, tenant_id)
    wh = Warehouse(engine)
    stored = {r["object_name"]: r for r in wh.summary(tenant_id)}
    health = wh.sync_health(tenant_id)
    discovery = data.get("discovery")
    objects_at_setup = discovery.get("objects", []) if isinstance(discovery, dict) else []
    # An optional object the admin did not choose is never synced: nothing waits for it.
    expected = {o["name"]: o for o in objects_at_setup if tenant.syncs(o["name"])}
    names = list(expected) or [n for n in stored if stored[n]["live_rows"] and tenant.syncs(n)]
    attempt: list[sync_progress.NextAttempt] = []

    def retry() -> sync_progress.NextAttempt:
        """Computed once, and only when some object failed or stopped."""
        if not attempt:
            ended = [r["last_finished_at"] for r in health.values()
                     if r["last_status"] in ("failed", "stopped") and r["last_finished_at"]]
            syncing = any(r["last_status"] == "running" for r in health.values())
            attempt.append(sync_progress.next_attempt(
                engine, tenant, max(ended, default=None), syncing, now))
        return attempt[0]

    objects = [
        sync_progress.object_row(
            name, expected.get(name, {}).get("label", name), health.get(name, {}),
            int(stored.get(name, {}).get("live_rows", 0)),
            int(expected.get(name, {}).get("count") or 0), retry, now)
        for name in names
    ]
    return {
        "tenant_status": tenant.status,
        "completed_at": _iso(completed_at),
        "setup_seconds": round((completed_at - started_at).total_seconds())
        if completed_at and started_at else None,
        "frequency_minutes": tenant.sync_frequency_minutes,
        "objects": objects,
        "first_data_ready": bool(objects) and all(o["last_success_at"] for o in objects),
        "records_synced": sum(o["synced"] for o in objects),
        "records_expected": sum(o["expected"] for o in objects),
        "recommendations": recommendation_status.recommendations(engine, tenant_id, now),
    }


def priced_deals(engine: Engine, tenant_id: str) -> tuple[int, datetime | None]:
    """Open deals with a recommended price, and when they were computed.

    An excluded deal is a row with its reason but no price: it does not count.
    """
    table = price_recommendation
    query = sa.select(sa.func.count(), sa.func.max(table.c.computed_at)).where(
        table.c.tenant_id == tenant_id, table.c.method != "excluded")
    with engine.connect() as conn:
        count, computed_at = conn.execute(query).one()
    return int(count), computed_at


def awaiting_first_data_email(engine: Engine, limit: int = 200, after: str = "") -> list[str]:
    """Active tenants whose setup is complete, whose admin has not been told yet, and
    which have synced at least one object: the only ones whose first data can be in.

    At most `limit`, in tenant-id order starting after `after` and wrapping around, so
    a caller that passes the last id it handled visits every waiting tenant in turn:
    tenants whose data is slow to arrive never crowd out a newer one. The "synced
    something" test is one indexed probe per tenant in this query, where `progress` costs
    a handful of queries: with 800 new tenants waiting for their first sync, the sensor's
    tick took 6-8 s computing progress that could only say "not yet" (`make scale`).
    """
    has_admin = sa.exists().where(app_user.c.tenant_id == onboarding_state.c.tenant_id)
    synced_something = succeeded_sync_exists(onboarding_state.c.tenant_id)
    waiting = (
        sa.select(onboarding_state.c.tenant_id)
        .join(tenant_table, tenant_table.c.id == onboarding_state.c.tenant_id)
        .where(onboarding_state.c.completed_at.is_not(None),
               onboarding_state.c.first_data_notified_at.is_(None),
               tenant_table.c.status == "active", has_admin, synced_something)
        .order_by(onboarding_state.c.tenant_id)
    )
    with engine.connect() as conn:
        ids = list(conn.execute(
            waiting.where(onboarding_state.c.tenant_id > after).limit(limit)).scalars())
        if len(ids) < limit and after:
            ids += conn.execute(waiting.where(onboarding_state.c.tenant_id <= after)
                                .limit(limit - len(ids))).scalars()
    return ids


def _claim(engine: Engine, tenant_id: str) -> datetime | None:
    """Mark the e-mail as sent; the timestamp only for the one caller that wins the mark."""
    now = utcnow()
    with engine.begin() as conn:
        won = saved_progress.swap_first_data_notified(conn, tenant_id, was=None, now=now)
    return now if won else None


def _release(engine: Engine, tenant_id: str, claimed_at: datetime) -> None:
    """Undo our own claim after a failed hand-over, so a later check retries."""
    with engine.begin() as conn:
        saved_progress.swap_first_data_notified(conn, tenant_id, was=claimed_at, now=None)


def _failed_recently(engine: Engine, tenant_id: str) -> bool:
    query = sa.select(sa.func.count()).select_from(audit_event).where(
        audit_event.c.tenant_id == tenant_id, audit_event.c.action == FIRST_DATA_ACTION,
        audit_event.c.outcome == "failed", audit_event.c.created_at > utcnow() - RETRY_AFTER)
    with engine.connect() as conn:
        return bool(conn.execute(query).scalar_one())


def _admin(engine: Engine, tenant_id: str) -> RowMapping | None:
    """The admin who signed the tenant up (the first account), who gets the e-mail."""
    query = (sa.select(app_user.c.email, app_user.c.full_name)
             .where(app_user.c.tenant_id == tenant_id).order_by(app_user.c.id).limit(1))
    with engine.connect() as conn:
        return conn.execute(query).mappings().first()


def _audit(engine: Engine, tenant_id: str, outcome: str, actor: str) -> None:
    with engine.begin() as conn:
        audit.append(conn, FIRST_DATA_ACTION, outcome=outcome, actor=actor, tenant_id=tenant_id)


def message_id(tenant_id: str, settings: SmtpSettings) -> str:
    """The same Message-ID for every attempt at one tenant's e-mail: the dedupe key."""
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or "accrue.local"
    return f"<first-data.{tenant_id}@{domain}>"


def _crm_name(engine: Engine, tenant_id: str) -> str:
    """The tenant's CRM as its spec names it ("your CRM" for one no longer registered)."""
    from connectors import registry

    crm_type = tenants.require_tenant(engine, tenant_id).crm_type
    return next((s.name for s in registry.specs() if s.key == crm_type), "your CRM")


def notify_first_data(
    engine: Engine,
    tenant_id: str,
    settings: SmtpSettings,
    *,
    actor: str,
    status_url: str | None = None,
    report: dict[str, Any] | None = None,
) -> str:
    """Send "your first data is ready" once, if it is; the outcome as a word.

    `not_ready`, `disabled` (no SMTP host: nothing claimed, so a process that
    has e-mail configured still sends), `no_admin`, `already` (sent or being
    sent by someone else), `backoff` (failed moments ago), `sent`, `failed`.
    """
    if not settings.host:
        return "disabled"
    report = report if report is not None else progress(engine, tenant_id)
    if not report["first_data_ready"]:
        return "not_ready"
    admin = _admin(engine, tenant_id)
    if admin is None:
        return "no_admin"
    if _failed_recently(engine, tenant_id):
        return "backoff"
    claimed_at = _claim(engine, tenant_id)
    if claimed_at is None:
        return "already"
    body = render("first_data.txt", name=admin["full_name"], report=report,
                  status_url=status_url, crm_name=_crm_name(engine, tenant_id))
    if send_email(settings, admin["email"], FIRST_DATA_SUBJECT, body,
                  message_id=message_id(tenant_id, settings)):
        _audit(engine, tenant_id, "ok", actor)
        return "sent"
    _release(engine, tenant_id, claimed_at)
    _audit(engine, tenant_id, "failed", actor)
    return "failed"
