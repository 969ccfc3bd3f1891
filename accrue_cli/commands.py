"""`accrue`: the operator's command line (sandbox, database, keys, tenants, syncs, demo)."""

from __future__ import annotations

import os
import sys

import click

from accrue import config


def _crm_keys() -> list[str]:
    from connectors import registry  # spec modules only: cheap

    return registry.supported_crms()


@click.group()
def main() -> None:
    """Accrue data platform."""


# -- sandbox ------------------------------------------------------------------


@main.group()
def sandbox() -> None:
    """Local CRM sandboxes that speak the CRMs' real APIs."""


def _sandbox_command(crm_type: str, crm_name: str) -> click.Command:
    """`accrue sandbox <crm>`: the same options for every CRM with a sandbox."""

    @click.option("--port", type=int, default=8701, show_default=True)
    @click.option("--host", default="127.0.0.1", show_default=True)
    @click.option("--opportunities", type=int, default=2000, show_default=True,
                  help="Deals to seed (with proportional accounts, contacts, products, "
                  "sellers and activities) when the state file is empty; 0 is an empty org.")
    @click.option("--seed", type=int, default=42, show_default=True,
                  help="Random seed of the generated data (same seed, same org).")
    @click.option("--state", "state_path", type=click.Path(dir_okay=False), default=None,
                  help="SQLite file holding the org (default: "
                  f"<ACCRUE_HOME>/sandbox-{crm_type}.db).")
    @click.option("--faults", default=None, help='Fault switches as JSON or a JSON file, e.g. '
                  '\'{"error_rate": 0.05}\' (docs/connectors.md, "Sandboxes").')
    @click.option("--login", "logins", multiple=True, metavar="NAME=VALUE",
                  help="Set one of the org's integration-user secrets instead of the made-up "
                  "default, e.g. --login password=... --login security_token=... "
                  "(what a CRM's sandbox lets you set: its `serve` parameters).")
    def serve(port: int, host: str, opportunities: int, seed: int, state_path: str | None,
              faults: str | None, logins: tuple[str, ...]) -> None:
        import inspect
        import json
        from pathlib import Path

        from connectors import registry
        from connectors.spec import load

        spec = registry.spec(crm_type)
        switches = None
        if faults:
            text = Path(faults).read_text() if Path(faults).is_file() else faults
            try:
                switches = json.loads(text)
            except ValueError as exc:
                raise click.BadParameter(f"not JSON: {exc}", param_hint="--faults") from None
        path = Path(state_path) if state_path else (
            config.accrue_home() / f"sandbox-{crm_type}.db")
        chosen = dict(item.partition("=")[::2] for item in logins)
        if any(not name or not value for name, value in chosen.items()):
            raise click.BadParameter("use NAME=VALUE", param_hint="--login")
        harness = load(str(spec.sandbox))()
        accepted = set(inspect.signature(harness.serve).parameters)
        unknown = sorted(set(chosen) - accepted)
        if unknown:
            raise click.BadParameter(f"the {spec.name} sandbox cannot set {', '.join(unknown)}",
                                     param_hint="--login")
        try:
            harness.serve(path, opportunities=opportunities, seed=seed, host=host, port=port,
                          faults=switches, **chosen)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None

    return click.command(crm_type, help=f"Serve a local {crm_name} org on http://HOST:PORT "
                         "(its real client library talks to it unchanged).")(serve)


def _register_sandboxes() -> None:
    from connectors import registry

    for spec in registry.specs():
        if spec.sandbox:
            sandbox.add_command(_sandbox_command(spec.key, spec.name))


_register_sandboxes()


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

    from accrue_cli.mail_sink import serve

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
    from accrue import audit, crypto, db, tenants

    engine = db.make_engine()
    ring = crypto.Keyring.from_env()
    counts = tenants.rotate_keys(engine, keyring=ring)
    # The audit trail records who rotated, when, and the counts: key ids only, no key material.
    with engine.begin() as conn:
        audit.append(conn, "keys.rotated", outcome="failed" if counts.get("failed") else "ok",
                     actor="cli", detail={**counts, "primary_key_id": ring.primary_kid})
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
@click.option("--crm", "crm_type", type=click.Choice(_crm_keys()), required=True)
@click.option("--auth", "auth_method", default=None,
              help="Sign-in method (default: the CRM's recommended one that needs no "
              "browser); `accrue tenant fields --crm X` lists them.")
@click.option("--set", "values", multiple=True, metavar="FIELD=VALUE",
              help="A setup field that is not secret, e.g. --set username=ana@acme.com.")
@click.option("--sandbox-url", default=None,
              help="Point the connector at a local sandbox, e.g. http://127.0.0.1:8701")
@click.option("--frequency", "sync_frequency_minutes", type=int, default=60,
              show_default=True, help="Minutes between syncs: 5, 15, 30, 60, 360 or 1440.")
@click.option("--check/--no-check", default=True, show_default=True,
              help="Test the connection before saving.")
def tenant_add(tenant_id: str, name: str | None, crm_type: str, auth_method: str | None,
               values: tuple[str, ...], sandbox_url: str | None, sync_frequency_minutes: int,
               check: bool) -> None:
    """Register TENANT and store its CRM credentials encrypted.

    Secret fields are read from their environment variables (listed by
    `accrue tenant fields`) or prompted for, never taken on the command line.
    """
    from accrue import db, tenants
    from connectors import registry
    from connectors.spec import SetupValueError, prepare_connection

    spec = registry.spec(crm_type)
    given: dict[str, str] = {}
    for item in values:
        field_name, sep, value = item.partition("=")
        if not sep or field_name not in {f.name for f in spec.fields}:
            raise click.BadParameter(f"{item!r}: use FIELD=VALUE with one of "
                                     f"{', '.join(f.name for f in spec.fields)}",
                                     param_hint="--set")
        if spec.field(field_name).secret:
            raise click.BadParameter(f"{field_name} is secret: set {spec.field(field_name).env} "
                                     "or answer the prompt", param_hint="--set")
        given[field_name] = value
    method = spec.auth(auth_method) if auth_method else next(
        (m for m in spec.auth_methods if m.kind != "oauth2_code"), spec.auth(None))
    for setup in spec.fields_for(method.key):
        if setup.secret and setup.name not in given:
            value = os.environ.get(setup.env or "", "")
            if not value and setup.required:
                value = click.prompt(setup.label, hide_input=True)
            given[setup.name] = value
    try:
        secrets, crm_config = prepare_connection(spec, {**given, "auth": method.key})
    except SetupValueError as exc:
        raise click.ClickException(f"{exc.field}: {exc}") from None
    if sandbox_url:
        crm_config["sandbox_url"] = sandbox_url
    if check:
        with registry.create_connector(crm_type, secrets, crm_config) as connector:
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


@tenant.command("fields")
@click.option("--crm", "crm_type", type=click.Choice(_crm_keys()), required=True)
def tenant_fields(crm_type: str) -> None:
    """The setup fields and sign-in methods of a CRM (what `tenant add` asks for)."""
    from connectors import registry

    spec = registry.spec(crm_type)
    for method in spec.auth_methods:
        browser = " — signs in in a browser: use the concierge" if (
            method.kind == "oauth2_code") else ""
        click.echo(f"--auth {method.key}: {method.label}{browser}")
        for setup in spec.fields_for(method.key):
            how = f"env {setup.env}" if setup.secret else f"--set {setup.name}=..."
            need = "" if setup.required else ", optional"
            click.echo(f"    {setup.name}: {setup.label} ({how}{need}) — {setup.help}")


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


# -- push API ----------------------------------------------------------------

from accrue.push.cli import push as _push_group  # noqa: E402  (click only: cheap)

main.add_command(_push_group)


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
    from accrue_pipelines.platform.launch import run_tenant_sync

    ok = run_tenant_sync(tenant_id, list(object_names), echo=click.echo)
    if not ok:
        sys.exit(1)


@main.command("import")
@click.argument("tenant_id")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--object", "object_name", default="opportunity", show_default=True,
              help="The common object the file holds.")
@click.option("--snapshot", is_flag=True,
              help="The file is a full export: records absent from it are marked deleted.")
@click.option("--mapping", "mapping_path", type=click.Path(exists=True, dir_okay=False),
              help="A mapping (JSON) to use instead of the proposed or remembered one.")
@click.option("--write-mapping", type=click.Path(dir_okay=False),
              help="Write the proposed mapping to this JSON file to correct, import nothing.")
@click.option("--member", default=None, help="The CSV to import from a zip of several.")
@click.option("--dry-run", is_flag=True, help="Check and count every row, write nothing.")
@click.option("--yes", is_flag=True, help="Import with a new proposed mapping without asking.")
def import_command(tenant_id: str, file: str, object_name: str, snapshot: bool,
                   mapping_path: str | None, write_mapping: str | None, member: str | None,
                   dry_run: bool, yes: bool) -> None:
    """Import a CSV export (or a zip of CSVs) of TENANT's CRM into its warehouse."""
    from accrue.file_import.command import run_import

    sys.exit(run_import(tenant_id, file, object_name, snapshot=snapshot,
                        mapping_path=mapping_path, dry_run=dry_run, member=member, yes=yes,
                        write_mapping=write_mapping))


@main.command("analyze")
@click.argument("tenant_id")
def analyze_command(tenant_id: str) -> None:
    """Compute TENANT's summary and analytics now (price recommendations, revenue
    opportunities, seller metrics) from its synced data; the run shows in the Dagster UI."""
    from accrue_pipelines.platform.launch import run_tenant_analytics

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
    """Start the whole system on embedded defaults with a seeded demo tenant on each CRM.

    Ctrl-C, SIGTERM or SIGHUP stops every process it started. Ports: ACCRUE_DAGSTER_PORT,
    ACCRUE_APP_PORT, ACCRUE_SANDBOX_PORT_1..N (a demo tenant's org per CRM, then a sign-up
    org per CRM); smaller seeds: ACCRUE_DEMO_OPPORTUNITIES_SCALE.
    """
    from accrue_cli.demo import run_demo

    sys.exit(run_demo(check=check, timeout=timeout))


@main.command("app")
@click.option("--port", type=int, default=int(os.environ.get("ACCRUE_APP_PORT", "5050")))
@click.option("--host", default="127.0.0.1")
@click.option("--workers", type=int, default=int(os.environ.get("ACCRUE_APP_WORKERS", "2")),
              help="gunicorn worker processes")
@click.option("--threads", type=int, default=int(os.environ.get("ACCRUE_APP_THREADS", "4")),
              help="threads per worker (a request waiting on the database leaves the CPU "
                   "to another)")
def app_command(port: int, host: str, workers: int, threads: int) -> None:
    """Serve the onboarding concierge with gunicorn (a production WSGI server)."""
    # This process becomes gunicorn: signals (Ctrl-C, SIGTERM) reach it directly.
    os.execv(sys.executable, [
        sys.executable, "-m", "gunicorn", "onboarding_app.wsgi:app",
        "--bind", f"{host}:{port}", "--workers", str(workers), "--threads", str(threads),
        "--graceful-timeout", "10", "--access-logfile", "-",
    ])


def _safe_url(url: object) -> str:
    """A database URL without its password, for messages."""
    render = getattr(url, "render_as_string", None)
    return render(hide_password=True) if render else "<database>"

