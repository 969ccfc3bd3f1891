"""`accrue push ...`: a push tenant's credentials, and applying its inbox by hand."""

from __future__ import annotations

import click


@click.group("push")
def push() -> None:
    """The push API (tenants whose CRM pushes records to Accrue)."""


@push.command("credentials")
@click.argument("tenant_id")
@click.option("--name", default=None, help="Display name when TENANT is new (default: its id).")
@click.option("--switch", is_flag=True,
              help="TENANT syncs from a CRM today: make it a push tenant (its syncs stop).")
@click.option("--retire-old", is_flag=True,
              help="End a rotation: every secret but the newest stops working (no new one).")
def credentials_command(tenant_id: str, name: str | None, switch: bool, retire_old: bool) -> None:
    """Create TENANT's push secret, or a new one beside the old (rotation); prints it once.

    A TENANT not yet registered is registered as a push tenant. During a rotation the old
    secret keeps working until `--retire-old`.
    """
    from accrue import db, tenants
    from accrue.push import PUSH_CRM_TYPE, credentials

    engine = db.make_engine()
    db.require_current(engine)
    if retire_old:
        try:
            retired = credentials.retire_old_secrets(engine, tenant_id)
        except credentials.PushCredentialError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"retired {retired} old push secret(s) of {tenant_id}")
        return
    try:
        current = tenants.get_tenant(engine, tenant_id)
        if current is None:
            tenants.add_tenant(engine, tenant_id, name or tenant_id, PUSH_CRM_TYPE)
            click.echo(f"tenant {tenant_id} registered (fed by the push API)")
        elif current.crm_type != PUSH_CRM_TYPE:
            if not switch:
                raise click.ClickException(
                    f"tenant {tenant_id} syncs from {current.crm_type}; pass --switch to feed "
                    "it by the push API instead")
            tenants.set_crm_type(engine, tenant_id, PUSH_CRM_TYPE)
            click.echo(f"tenant {tenant_id} now fed by the push API (no more CRM syncs)")
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    issued = credentials.issue_secret(engine, tenant_id)
    live = [c for c in credentials.list_credentials(engine, tenant_id) if c.retired_at is None]
    click.echo(f"URL:        POST /v1/push/{tenant_id}/records")
    click.echo(f"Client id:  {issued.client_id}   (header Accrue-Client-Id)")
    click.echo(f"Secret:     {issued.secret}")
    click.echo("The secret is shown this once; Accrue keeps it encrypted and cannot show it "
               "again. Sign each push with it as Standard Webhooks describes.")
    if len(live) > 1:
        click.echo(f"{len(live) - 1} older secret(s) still work: run `accrue push credentials "
                   f"{tenant_id} --retire-old` once every sender uses the new one.")


@push.command("process")
@click.argument("tenant_id")
@click.option("--limit", type=int, default=None,
              help="Batches per page (one transaction per object and page).")
def process_command(tenant_id: str, limit: int | None) -> None:
    """Apply TENANT's pushed batches to its warehouse tables now (the pipelines do it by
    themselves when batches are pending)."""
    from accrue import db
    from accrue.push import inbox, process

    engine = db.make_engine()
    db.require_current(engine)
    try:
        result = process.process_inbox(engine, tenant_id, page_batches=limit)
    except (ValueError, LookupError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{tenant_id}: {result.total('records_read')} record(s): "
               f"{result.total('upserted')} upserted, {result.total('deleted')} deleted, "
               f"{result.total('skipped_stale')} older than what is stored, "
               f"{result.total('quarantined')} quarantined; "
               f"{inbox.pending_count(engine, tenant_id)} batch(es) still pending")
