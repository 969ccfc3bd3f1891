"""`accrue import TENANT FILE --object opportunity`: the operator's file import.

It prints what it detected and the mapping with sample values and the whole file's
type check. A mapping remembered for the tenant and object with the same header shape,
or one given with `--mapping`, imports without a question; a new proposal is confirmed
first (or `--yes`), or written to a JSON file to correct (`--write-mapping`) and passed
back with `--mapping`.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from accrue.file_import.importer import import_file
from accrue.file_import.mapping import FileMapping
from accrue.file_import.proposal import propose
from accrue.file_import.reading import FileImportError

ERRORS_PRINTED = 20


def run_import(
    tenant_id: str, path: str, object_name: str, *, snapshot: bool, mapping_path: str | None,
    dry_run: bool, member: str | None, yes: bool, write_mapping: str | None,
) -> int:
    """The command's work; returns the exit status."""
    from accrue import db, tenants
    from accrue.warehouse import Warehouse

    engine = db.make_engine()
    try:
        if tenants.get_tenant(engine, tenant_id) is None:
            click.echo(f"no tenant {tenant_id!r} (accrue tenant list)", err=True)
            return 1
        given = None
        if mapping_path:
            try:
                given = FileMapping.from_json(json.loads(Path(mapping_path).read_text()))
            except (OSError, ValueError) as exc:
                click.echo(f"{mapping_path}: {exc}", err=True)
                return 1
        warehouse = Warehouse(engine)
        proposal = propose(warehouse, tenant_id, object_name, path, mapping=given,
                           member=member)
        click.echo(proposal.render())
        mapping = proposal.mapping
        if mapping is None:
            click.echo("no column holds the record id: give a mapping with --mapping", err=True)
            return 1
        if write_mapping:
            Path(write_mapping).write_text(json.dumps(mapping.as_json(), indent=2) + "\n")
            click.echo(f"mapping written to {write_mapping}: correct it, then pass it back "
                       "with --mapping")
            return 0
        asked = not (proposal.remembered or given is not None or yes or dry_run)
        if asked and not click.confirm("Import with this mapping?", default=False):
            click.echo("nothing imported; --write-mapping FILE saves the mapping to correct")
            return 1
        result = import_file(engine, tenant_id, object_name, path, mapping,
                             snapshot=snapshot, member=member, dry_run=dry_run,
                             progress=None if dry_run else click.echo)
    except FileImportError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    finally:
        engine.dispose()
    click.echo(result.summary())
    for line, reason in result.errors[:ERRORS_PRINTED]:
        click.echo(f"  line {line}: {reason}")
    if len(result.errors) > ERRORS_PRINTED or result.quarantined > len(result.errors):
        click.echo("  ... every quarantined row is in crm_quarantine with its line and reason")
    if not dry_run and result.upserted + result.deleted:
        click.echo(f"price the imported deals now: accrue analyze {tenant_id}")
    return 0
