"""`accrue`: the operator's command line (sandbox, database, keys, tenants, syncs, demo)."""

from __future__ import annotations

import os
import sys

import click

from accrue import config


@click.group()
def main() -> None:
    """Accrue data platform."""


# -- sandbox ------------------------------------------------------------------


@main.group()
def sandbox() -> None:
    """Local CRM sandboxes that speak the CRMs' real APIs."""


@sandbox.command("salesforce")
@click.option("--port", type=int, default=8701, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed N opportunities (with proportional "
    "accounts, contacts, leads, products, sellers) when the state file is empty.",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="SQLite file holding the org (default: <ACCRUE_HOME>/sandbox-salesforce.db).",
)
@click.option("--page-size", type=int, default=2000, show_default=True)
@click.option("--faults", default=None, help='Fault switches as JSON or a JSON file, e.g. '
              '\'{"error_rate": 0.05, "late_commit_rate": 0.1}\' (see docs/sandbox-salesforce.md).')
def sandbox_salesforce(
    port: int, host: str, seed: int | None, state_path: str | None, page_size: int,
    faults: str | None,
) -> None:
    """Serve a Salesforce org (REST + SOAP login) on http://HOST:PORT."""
    from connectors.salesforce.sandbox import parse_faults, serve

    fault_config = None
    if faults:
        try:
            fault_config = parse_faults(faults)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--faults") from None
    path = state_path or str(config.accrue_home() / "sandbox-salesforce.db")
    click.echo(f"Salesforce sandbox on http://{host}:{port} (state: {path})", err=True)
    serve(port=port, state_path=path, seed=seed, host=host, page_size=page_size,
          faults=fault_config)


# -- database and keys --------------------------------------------------------


@main.command("mail-sink")
@click.option("--smtp-port", type=int, default=1025, show_default=True)
@click.option("--http-port", type=int, default=8025, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--maildir", type=click.Path(file_okay=False), default=None,
              help="Where caught mail is kept (default: <ACCRUE_HOME>/mail).")
def mail_sink_command(smtp_port: int, http_port: int, host: str, maildir: str | None) -> None:
    """A local SMTP server that keeps every mail, and a page to read them (the demo's)."""
    from pathlib import Path

    from accrue.mail_sink import serve

    path = Path(maildir) if maildir else config.accrue_home() / "mail"
    click.echo(f"Mail sink: SMTP on {host}:{smtp_port}, inbox on http://{host}:{http_port} "
               f"(mail kept in {path})", err=True)
    serve(path, host, smtp_port, http_port)


@main.group("db")
def db_group() -> None:
    """The warehouse database."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the warehouse schema to the newest revision."""
    from accrue import db

    engine = db.make_engine()
    db.upgrade(engine)
    click.echo(f"warehouse at revision {db.current_revision(engine)} ({_safe_url(engine.url)})")


@main.group()
def keys() -> None:
    """Encryption keys for CRM credentials (ACCRUE_SECRET_KEYS)."""


@keys.command("generate")
def keys_generate() -> None:
    """Print a new key entry; prepend it to ACCRUE_SECRET_KEYS to make it the primary key."""
    from accrue import crypto

    click.echo(crypto.generate_key())


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored credential under the primary (first) key (audited)."""
    import sqlalchemy as sa

    from accrue import crypto, db, tenants
    from accrue.schema import audit_event, utcnow

    engine = db.make_engine()
    ring = crypto.Keyring.from_env()
    counts = tenants.rotate_keys(engine, keyring=ring)
    # The audit trail records who rotated, when, and the counts: key ids only, no key material.
    with engine.begin() as conn:
        conn.execute(sa.insert(audit_event).values(
            tenant_id=None, actor="cli", action="keys.rotated",
            outcome="failed" if counts.get("failed") else "ok",
            detail={**counts, "primary_key_id": ring.primary_kid}, created_at=utcnow(),
        ))
    click.echo(" ".join(f"{k}={v}" for k, v in counts.items()))
    if counts.get("failed"):
        sys.exit(1)


# -- tenants ------------------------------------------------------------------


@main.group()
def tenant() -> None:
    """The tenant registry."""


@tenant.command("add")
@click.argument("tenant_id")
@click.option("--name", default=None, help="Display name (default: the tenant id).")
@click.option(
    "--crm", "crm_type", type=click.Choice(["salesforce"]), default="salesforce", show_default=True
)
@click.option("--username", required=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    envvar="ACCRUE_CRM_PASSWORD",
    help="Prompted for when omitted (or set ACCRUE_CRM_PASSWORD).",
)
@click.option("--security-token", default="", envvar="ACCRUE_CRM_SECURITY_TOKEN")
@click.option(
    "--domain",
    default="login",
    show_default=True,
    help="login, test, or a My Domain such as acme.my",
)
@click.option(
    "--sandbox-url",
    default=None,
    help="Point the connector at a local sandbox, e.g. http://127.0.0.1:8701",
)
@click.option(
    "--frequency",
    "sync_frequency_minutes",
    type=int,
    default=60,
    show_default=True,
    help="Minutes between syncs: 5, 15, 30, 60, 360 or 1440.",
)
@click.option(
    "--check/--no-check", default=True, show_default=True, help="Test the connection before saving."
)
def tenant_add(
    tenant_id: str,
    name: str | None,
    crm_type: str,
    username: str,
    password: str,
    security_token: str,
    domain: str,
    sandbox_url: str | None,
    sync_frequency_minutes: int,
    check: bool,
) -> None:
    """Register TENANT and store its CRM credentials encrypted."""
    from accrue import db, tenants
    from connectors.registry import create_connector

    secrets = {"username": username, "password": password, "security_token": security_token}
    crm_config = {"domain": domain, **({"sandbox_url": sandbox_url} if sandbox_url else {})}
    if check:
        with create_connector(crm_type, secrets, crm_config) as connector:
            result = connector.check()
        if not result.ok:
            raise click.ClickException(
                f"connection test failed: {result.message}"
                + (f" ({result.hint})" if result.hint else "")
            )
        click.echo(result.message)
    engine = db.make_engine()
    db.require_current(engine)
    try:
        tenants.add_tenant(
            engine,
            tenant_id,
            name or tenant_id,
            crm_type,
            sync_frequency_minutes=sync_frequency_minutes,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    tenants.save_credentials(engine, tenant_id, crm_type, secrets, crm_config)
    click.echo(f"tenant {tenant_id} registered ({crm_type}, every {sync_frequency_minutes} min)")


@tenant.command("list")
def tenant_list() -> None:
    """List tenants with their status and sync frequency."""
    from accrue import db, tenants

    for t in tenants.list_tenants(db.make_engine()):
        click.echo(
            f"{t.id}\t{t.status}\t{t.crm_type}\tevery {t.sync_frequency_minutes} min\t{t.name}"
        )


@tenant.command("set-status")
@click.argument("tenant_id")
@click.argument("status", type=click.Choice(["active", "paused", "deleted"]))
def tenant_set_status(tenant_id: str, status: str) -> None:
    """Pause, resume or delete a tenant (its partition follows within a minute)."""
    from accrue import db, tenants

    tenants.set_status(db.make_engine(), tenant_id, status)
    click.echo(f"tenant {tenant_id} is {status}")


# -- syncs --------------------------------------------------------------------


@main.command("sync")
@click.argument("tenant_id")
@click.option(
    "--object",
    "object_names",
    multiple=True,
    help="Only this common object (repeatable), e.g. opportunity.",
)
def sync_command(tenant_id: str, object_names: tuple[str, ...]) -> None:
    """Materialize TENANT's sync assets now; the run shows in the Dagster UI."""
    from accrue_pipelines.launch import run_tenant_sync

    ok = run_tenant_sync(tenant_id, list(object_names), echo=click.echo)
    if not ok:
        sys.exit(1)


@main.command("analyze")
@click.argument("tenant_id")
def analyze_command(tenant_id: str) -> None:
    """Compute TENANT's summary and analytics now (price recommendations, revenue
    opportunities, seller metrics) from its synced data; the run shows in the Dagster UI."""
    from accrue_pipelines.launch import run_tenant_analytics

    if not run_tenant_analytics(tenant_id, echo=click.echo):
        sys.exit(1)


@main.command("demo")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 0 once both demo tenants have data and price recommendations (smoke run).",
)
@click.option(
    "--timeout",
    type=click.IntRange(min=1),
    default=600,
    show_default=True,
    help="Seconds from start before --check gives up and exits 1.",
)
def demo_command(check: bool, timeout: int) -> None:
    """Start the whole system on embedded defaults with two seeded demo tenants.

    Ctrl-C, SIGTERM or SIGHUP stops every process it started. Ports: ACCRUE_DAGSTER_PORT,
    ACCRUE_APP_PORT, ACCRUE_SANDBOX_PORT_1..3; smaller seeds: ACCRUE_DEMO_OPPORTUNITIES_SCALE.
    """
    from accrue.demo import run_demo

    sys.exit(run_demo(check=check, timeout=timeout))


@main.command("app")
@click.option("--port", type=int, default=int(os.environ.get("ACCRUE_APP_PORT", "5050")))
@click.option("--host", default="127.0.0.1")
@click.option("--workers", type=int, default=int(os.environ.get("ACCRUE_APP_WORKERS", "2")),
              help="gunicorn worker processes (each with 4 threads)")
def app_command(port: int, host: str, workers: int) -> None:
    """Serve the onboarding concierge with gunicorn (a production WSGI server)."""
    # This process becomes gunicorn: signals (Ctrl-C, SIGTERM) reach it directly.
    os.execv(sys.executable, [
        sys.executable, "-m", "gunicorn", "onboarding_app.wsgi:app",
        "--bind", f"{host}:{port}", "--workers", str(workers), "--threads", "4",
        "--graceful-timeout", "10", "--access-logfile", "-",
    ])


def _safe_url(url: object) -> str:
    """A database URL without its password, for messages."""
    render = getattr(url, "render_as_string", None)
    return render(hide_password=True) if render else "<database>"


if __name__ == "__main__":
    main()
