"""The first-data e-mail sensor: the admin hears once when the first sync is in, page or not.

Real pieces throughout: a warehouse per backend, the Salesforce sandbox synced
with `accrue.sync.sync_object`, and a local aiosmtpd server as the mail server.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue import onboarding_notify, tenants
from accrue.schema import app_user, audit_event, onboarding_state, sync_run, utcnow
from accrue.schema import tenant as tenant_table
from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines.onboarding.sensors import first_data_email_sensor
from accrue_pipelines.platform.resources import WarehouseResource
from accrue_pipelines_tests.concierge.test_concierge_status import Inbox, smtp  # noqa: F401 - fixture
from connectors.registry import create_connector
from connectors.salesforce.sandbox import RunningSandbox

# What the wizard's connection test would have discovered; first data = both synced.
OBJECTS = ("account", "opportunity")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def mail_env(monkeypatch: pytest.MonkeyPatch, smtp: tuple[Inbox, int]) -> Inbox:  # noqa: F811
    """The Dagster process's environment: the same ACCRUE_SMTP_* variables as the app."""
    inbox, port = smtp
    monkeypatch.setenv("ACCRUE_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ACCRUE_SMTP_PORT", str(port))
    monkeypatch.setenv("ACCRUE_MAIL_FROM", "Accrue <concierge@accrue.test>")
    monkeypatch.setenv("ACCRUE_APP_PUBLIC_URL", "https://app.accrue.test/")
    return inbox


def completed_setup(engine: Engine, tenant_id: str, sandbox: RunningSandbox) -> str:
    """A tenant whose admin clicked "Finish and Close"; returns the admin's e-mail."""
    email = f"admin@{tenant_id}.example.com"
    tenants.add_tenant(engine, tenant_id, "Mail Co", "salesforce", status="active")
    tenants.save_credentials(
        engine, tenant_id, "salesforce",
        {"username": sandbox.username, "password": sandbox.password,
         "security_token": sandbox.security_token},
        {"sandbox_url": sandbox.url},
    )
    counts = sandbox.sandbox.counts()
    discovery = {"objects": [
        {"name": name, "label": name.title(), "count": counts[name.title()]["live"]}
        for name in OBJECTS]}
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(sa.insert(app_user).values(
            tenant_id=tenant_id, email=email, full_name="Mo Mail", password_hash="unused",
            created_at=now, updated_at=now))
        conn.execute(sa.insert(onboarding_state).values(
            tenant_id=tenant_id, step="complete", data={"discovery": discovery},
            started_at=now, completed_at=now, created_at=now, updated_at=now))
    return email


def sync_first_data(engine: Engine, tenant_id: str) -> None:
    connection = tenants.load_connection(engine, tenant_id)
    with create_connector("salesforce", connection.secrets, connection.config) as connector:
        for name in OBJECTS:
            sync_object(Warehouse(engine), connector, tenant_id, name)


def tick(instance: dg.DagsterInstance, database_url: str, cursor: str | None = None) -> Any:
    resources = {"warehouse": WarehouseResource(database_url=database_url)}
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
        return first_data_email_sensor(ctx)


def mails_to(inbox: Inbox, *addresses: str) -> list[Any]:
    return [m for m in inbox.messages if m["To"] in addresses]


def notified_at(engine: Engine, tenant_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.select(onboarding_state.c.first_data_notified_at).where(
            onboarding_state.c.tenant_id == tenant_id)).scalar_one()


def test_sensor_definition() -> None:
    assert first_data_email_sensor.name == "first_data_email_sensor"
    assert first_data_email_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert first_data_email_sensor.minimum_interval_seconds == 60


def test_one_email_across_two_ticks_and_none_without_data(
    engine: Engine, database_url: str, make_tenant_id: Any, tenant_id: str,
    sf_sandbox: RunningSandbox, instance: dg.DagsterInstance, mail_env: Inbox,
) -> None:
    synced_admin = completed_setup(engine, tenant_id, sf_sandbox)
    empty_tenant = make_tenant_id()
    empty_admin = completed_setup(engine, empty_tenant, sf_sandbox)

    tick(instance, database_url)
    assert mails_to(mail_env, synced_admin, empty_admin) == []  # nothing synced yet

    sync_first_data(engine, tenant_id)
    first = tick(instance, database_url)
    second = tick(instance, database_url, first.cursor)
    assert first.skip_reason and second.skip_reason and not first.run_requests

    mails = mails_to(mail_env, synced_admin, empty_admin)
    assert len(mails) == 1
    mail = mails[0]
    assert mail["To"] == synced_admin
    assert mail["Subject"] == onboarding_notify.FIRST_DATA_SUBJECT
    assert mail["Message-ID"] == f"<first-data.{tenant_id}@accrue.test>"
    body = mail.get_payload(decode=True).decode()
    assert "https://app.accrue.test/status" in body and "Hello Mo Mail" in body
    assert sf_sandbox.password not in body and sf_sandbox.security_token not in body
    assert notified_at(engine, tenant_id) is not None
    assert notified_at(engine, empty_tenant) is None  # still waiting for its data
    # Nothing synced yet: not even looked at (the cheap test comes first).
    assert empty_tenant not in onboarding_notify.awaiting_first_data_email(engine, limit=10_000)
    assert tenant_id not in onboarding_notify.awaiting_first_data_email(engine, limit=10_000)
    with engine.connect() as conn:
        audited = conn.execute(sa.select(audit_event.c.actor, audit_event.c.outcome).where(
            audit_event.c.tenant_id == tenant_id,
            audit_event.c.action == onboarding_notify.FIRST_DATA_ACTION)).all()
    assert [tuple(a) for a in audited] == [("dagster:first_data_email_sensor", "ok")]


def test_a_failed_handover_is_retried_not_lost(
    engine: Engine, database_url: str, tenant_id: str, sf_sandbox: RunningSandbox,
    instance: dg.DagsterInstance, mail_env: Inbox, monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = completed_setup(engine, tenant_id, sf_sandbox)
    sync_first_data(engine, tenant_id)
    down = onboarding_notify.SmtpSettings(host="127.0.0.1", port=1)  # nothing listens there
    outcome = onboarding_notify.notify_first_data(engine, tenant_id, down, actor="test")
    assert outcome == "failed"
    assert notified_at(engine, tenant_id) is None  # the claim was released
    assert onboarding_notify.notify_first_data(engine, tenant_id, down, actor="test") == (
        "backoff")
    # Once the back-off has passed, the sensor delivers it.
    monkeypatch.setattr(onboarding_notify, "RETRY_AFTER", onboarding_notify.RETRY_AFTER * 0)
    tick(instance, database_url)
    tick(instance, database_url)
    assert len(mails_to(mail_env, admin)) == 1


def test_no_smtp_host_claims_nothing(
    engine: Engine, database_url: str, tenant_id: str, sf_sandbox: RunningSandbox,
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ACCRUE_SMTP_HOST", raising=False)
    completed_setup(engine, tenant_id, sf_sandbox)
    sync_first_data(engine, tenant_id)
    result = tick(instance, database_url)
    assert isinstance(result, dg.SkipReason) and "ACCRUE_SMTP_HOST" in str(result.skip_message)
    # Left for a process that has e-mail configured (the app, or this sensor later).
    assert notified_at(engine, tenant_id) is None


def _earlier_setups(engine: Engine, make_tenant_id: Any, count: int, status: str) -> list[str]:
    """`count` tenants that finished setup before anyone else and never got first data:
    one object synced, not the rest (the tenants a round must walk past)."""
    ids = sorted(make_tenant_id() for _ in range(count))
    long_ago = utcnow().replace(year=2020)
    with engine.begin() as conn:
        conn.execute(sa.insert(tenant_table), [
            {"id": t, "name": "Early Co", "crm_type": "salesforce", "status": status,
             "sync_frequency_minutes": 60, "created_at": long_ago, "updated_at": long_ago}
            for t in ids])
        conn.execute(sa.insert(app_user), [
            {"tenant_id": t, "email": f"a@{t}.example.com", "full_name": "Early",
             "password_hash": "unused", "created_at": long_ago, "updated_at": long_ago}
            for t in ids])
        conn.execute(sa.insert(onboarding_state), [
            {"tenant_id": t, "step": "complete", "data": {"discovery": {"objects": [
                {"name": "account", "count": 1}, {"name": "opportunity", "count": 1}]}},
             "started_at": long_ago, "completed_at": long_ago, "created_at": long_ago,
             "updated_at": long_ago}
            for t in ids])
        conn.execute(sa.insert(sync_run), [
            {"tenant_id": t, "object_name": "account", "started_at": long_ago,
             "finished_at": long_ago, "status": "succeeded"} for t in ids])
    return ids


@pytest.mark.parametrize("status", ["paused", "active"])
def test_a_new_tenant_is_never_starved_by_earlier_ones(
    engine: Engine, database_url: str, make_tenant_id: Any, tenant_id: str, status: str,
    sf_sandbox: RunningSandbox, instance: dg.DagsterInstance, mail_env: Inbox,
) -> None:
    """250 earlier setups (paused, or active with no data yet) ahead of a new ready tenant."""
    earlier = _earlier_setups(engine, make_tenant_id, 250, status)
    try:
        _new_tenant_gets_its_email(engine, database_url, tenant_id, status, earlier, sf_sandbox,
                                   instance, mail_env)
    finally:  # the session database is shared: leave no crowd behind for other tests
        with engine.begin() as conn:
            for table in (onboarding_state, app_user, sync_run):
                conn.execute(sa.delete(table).where(table.c.tenant_id.in_(earlier)))
            conn.execute(sa.delete(tenant_table).where(tenant_table.c.id.in_(earlier)))


def _new_tenant_gets_its_email(
    engine: Engine, database_url: str, tenant_id: str, status: str, earlier: list[str],
    sf_sandbox: RunningSandbox, instance: dg.DagsterInstance, mail_env: Inbox,
) -> None:
    admin = completed_setup(engine, tenant_id, sf_sandbox)
    sync_first_data(engine, tenant_id)
    waiting = onboarding_notify.awaiting_first_data_email(engine, limit=10_000)
    assert (set(earlier) <= set(waiting)) == (status == "active")  # paused ones never listed
    cursor = None
    for _ in range(-(-len(waiting) // 200)):  # one full round of ticks
        cursor = tick(instance, database_url, cursor).cursor
        if mails_to(mail_env, admin):
            break
    assert len(mails_to(mail_env, admin)) == 1
    assert notified_at(engine, tenant_id) is not None


def test_excluded_deals_are_not_recommendations(engine: Engine, tenant_id: str) -> None:
    """Every open deal has a row (issue 10); one excluded with its reason has no price, so
    it does not make the 'first recommendations' milestone."""
    from accrue.schema import price_recommendation

    tenants.add_tenant(engine, tenant_id, "Excluded Co", "salesforce")
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(sa.insert(price_recommendation), [
            {"tenant_id": tenant_id, "opportunity_id": f"006{i}", "computed_at": now,
             "method": "excluded", "model_version": "test"} for i in range(3)])
    assert onboarding_notify.priced_deals(engine, tenant_id) == (0, None)
    assert onboarding_notify.progress(engine, tenant_id)["recommendations"]["state"] == "pending"
    with engine.begin() as conn:
        conn.execute(sa.insert(price_recommendation).values(
            tenant_id=tenant_id, opportunity_id="006x", computed_at=now, method="model",
            model_version="test"))
    assert onboarding_notify.priced_deals(engine, tenant_id)[0] == 1
