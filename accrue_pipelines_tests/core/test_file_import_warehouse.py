"""File import (F9) into the warehouse, on SQLite and PostgreSQL: real exports' quirks, bad
rows quarantined by line, idempotent re-imports, snapshots that delete, resumed imports."""

from __future__ import annotations

import dataclasses
import shutil
import zipfile
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from accrue import config, tenants
from accrue.file_import import FileMapping, ValueFormat, import_file, propose
from accrue.schema import crm_change_log, object_table
from accrue.warehouse import Warehouse
from accrue_cli.commands import main

EXPORTS = Path(__file__).parents[1] / "file_import_exports"


@pytest.fixture(autouse=True)
def _registered(engine, tenant_id):
    """Remembered mappings belong to a registered tenant."""
    tenants.add_tenant(engine, tenant_id, "Acme", "salesforce")


def _rows(warehouse: Warehouse, tenant_id: str) -> dict[str, dict]:
    table = object_table("opportunity")
    with warehouse.engine.connect() as conn:
        found = conn.execute(sa.select(table).where(table.c.tenant_id == tenant_id)).mappings()
        return {row["source_id"]: dict(row) for row in found}


def _versions(warehouse: Warehouse, tenant_id: str) -> int:
    with warehouse.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(crm_change_log).where(
            crm_change_log.c.tenant_id == tenant_id)).scalar_one()


def _import(warehouse, tenant_id, path, *, snapshot=False, mapping=None, **kwargs):
    proposal = propose(warehouse, tenant_id, "opportunity", path, mapping=mapping)
    assert proposal.mapping is not None
    return proposal, import_file(warehouse.engine, tenant_id, "opportunity", path,
                                 proposal.mapping, snapshot=snapshot, **kwargs)


def test_a_salesforce_report_imports_and_its_bad_rows_wait_in_quarantine_by_line(
        warehouse, tenant_id):
    proposal, result = _import(warehouse, tenant_id, EXPORTS / "salesforce_report.csv")
    assert proposal.mapping.format == ValueFormat(".", "MDY", "UTC")
    assert (result.rows, result.upserted, result.quarantined) == (6, 4, 2)
    assert result.errors == [
        (6, "Amount (amount): 'TBD' is not a number"),
        (7, "Close Date (close_date): '31/12/2024' is not a real date in the file's MDY order"),
    ]
    rows = _rows(warehouse, tenant_id)
    acme = rows["0065g00000AbCdEAAV"]
    assert (acme["amount"], acme["stage"], acme["close_date"], acme["probability"]) == (
        1234.56, "Closed Won", date(2024, 1, 15), 100.0)
    assert acme["raw"]["Description"] == ('Signed after a second demo.\r\nPO attached, '
                                          '"net 30" terms.')
    assert rows["0065g00000AbCdGAAV"]["name"] == "Initech – Support plan"
    quarantined = warehouse.open_quarantine(tenant_id, "opportunity")
    assert sorted(q["source_id"] for q in quarantined) == ["0065g00000AbCdHAAV",
                                                           "0065g00000AbCdIAAV"]
    assert all(q["reason"].startswith("line ") for q in quarantined)
    assert quarantined[0]["raw"]["Opportunity Name"] in ("Umbrella Pilot", "Hooli Expansion")


def test_a_european_export_reads_decimal_commas_and_day_first_dates(warehouse, tenant_id):
    proposal, result = _import(warehouse, tenant_id, EXPORTS / "european_export.csv")
    assert (proposal.encoding, proposal.dialect.delimiter) == ("cp1252", ";")
    assert (result.upserted, result.quarantined) == (4, 0)
    rows = _rows(warehouse, tenant_id)
    first = rows["0065g00000EuAAAAA1"]
    # "1.234" is 1234 here because the file's other values say ',' is its decimal mark.
    assert (first["amount"], first["close_date"], first["name"]) == (
        1234.0, date(2024, 1, 15), "Müller GmbH – Rahmenvertrag")
    assert rows["0065g00000EuAAAAA2"]["amount"] == 12500.75
    assert rows["0065g00000EuAAAAA3"]["probability"] == 12.5
    assert rows["0065g00000EuAAAAA4"]["name"] == 'Björk AB "Nordic"'


def test_hubspot_and_pipedrive_exports_date_rows_by_their_last_modified_column(
        warehouse, tenant_id):
    _, hubspot = _import(warehouse, tenant_id, EXPORTS / "hubspot_deals.csv")
    assert (hubspot.upserted, hubspot.quarantined) == (4, 0)
    rows = _rows(warehouse, tenant_id)
    deal = rows["17538207771"]
    assert (deal["amount"], deal["stage"], deal["close_date"], deal["account_id"]) == (
        5000.0, "closedwon", date(2024, 1, 15), "9152463519")
    assert deal["source_modified_at"].isoformat() == "2024-01-15T10:25:00+00:00"
    assert rows["17538207773"]["amount"] is None  # empty is missing, not zero
    _, pipedrive = _import(warehouse, tenant_id, EXPORTS / "pipedrive_deals.csv")
    assert (pipedrive.upserted, pipedrive.quarantined) == (4, 1)
    assert pipedrive.errors == [(5, "no 'Deal - ID' (record id)")]
    rows = _rows(warehouse, tenant_id)
    assert (rows["101"]["amount"], rows["104"]["amount"]) == (1500.0, 3400.5)
    # Pipedrive's status says the outcome: open / won / lost.
    assert [(rows[i]["is_closed"], rows[i]["is_won"]) for i in ("101", "102", "103")] == [
        (False, False), (True, True), (True, False)]
    assert (deal["is_closed"], deal["is_won"]) == (True, True)  # HubSpot's "closedwon"
    assert rows["102"]["source_modified_at"].isoformat() == "2024-01-31T16:30:00+00:00"


def test_a_value_is_never_guessed_when_the_file_does_not_say(warehouse, tenant_id, tmp_path):
    path = tmp_path / "ambiguous.csv"
    path.write_text("Id,Amount\nA1,1.234\nA2,5.000\nA3,7\n")
    proposal, result = _import(warehouse, tenant_id, path)
    assert proposal.mapping.format.decimal is None
    assert (result.upserted, result.quarantined) == (1, 2)
    assert "ambiguous" in result.errors[0][1]
    # The admin says the file writes decimal commas: the same values are thousands.
    told = dataclasses.replace(proposal.mapping, format=ValueFormat(decimal=","))
    _, again = _import(warehouse, tenant_id, path, mapping=told)
    assert again.upserted == 2 and again.unchanged == 1
    assert _rows(warehouse, tenant_id)["A1"]["amount"] == 1234.0
    assert warehouse.quarantine_count(tenant_id, "opportunity") == 0  # resolved by the fix


def test_reimporting_changes_nothing_and_a_later_export_changes_only_what_changed(
        warehouse, tenant_id, tmp_path):
    path = EXPORTS / "european_export.csv"
    _import(warehouse, tenant_id, path)
    before, versions = _rows(warehouse, tenant_id), _versions(warehouse, tenant_id)
    _, again = _import(warehouse, tenant_id, path)
    assert again.already_imported
    warehouse.reset_state(tenant_id, "opportunity")  # forgotten: the rows still say it
    _, rerun = _import(warehouse, tenant_id, path)
    assert (rerun.upserted, rerun.unchanged) == (0, 4)
    assert _rows(warehouse, tenant_id) == before and _versions(warehouse, tenant_id) == versions
    later = tmp_path / "later.csv"
    later.write_bytes(path.read_bytes().replace(b";980,5;", b";990,5;"))
    _, update = _import(warehouse, tenant_id, later)
    assert (update.upserted, update.unchanged) == (1, 3)
    assert _rows(warehouse, tenant_id)["0065g00000EuAAAAA3"]["amount"] == 990.5
    history = warehouse.history(tenant_id, "opportunity", "0065g00000EuAAAAA3")
    assert [v["fields"]["amount"] for v in history] == [980.5, 990.5]


def test_a_snapshot_marks_deleted_what_the_full_export_no_longer_has(
        warehouse, tenant_id, tmp_path):
    path = EXPORTS / "european_export.csv"
    _import(warehouse, tenant_id, path, snapshot=True)
    lines = path.read_bytes().split(b"\r\n")
    smaller = tmp_path / "smaller.csv"
    smaller.write_bytes(b"\r\n".join(line for line in lines if b"EuAAAAA2" not in line))
    _, result = _import(warehouse, tenant_id, smaller, snapshot=True)
    assert (result.deleted, result.unchanged) == (1, 3)
    rows = _rows(warehouse, tenant_id)
    assert rows["0065g00000EuAAAAA2"]["is_deleted"]
    assert not any(rows[f"0065g00000EuAAAAA{i}"]["is_deleted"] for i in (1, 3, 4))
    # Changes only (no snapshot): absent records are left alone.
    only_one = tmp_path / "one.csv"
    only_one.write_bytes(b"\r\n".join(lines[:2]) + b"\r\n")
    _import(warehouse, tenant_id, only_one, snapshot=False)
    assert not _rows(warehouse, tenant_id)["0065g00000EuAAAAA3"]["is_deleted"]


def test_an_interrupted_import_resumes_after_its_last_committed_page(
        warehouse, tenant_id, tmp_path, monkeypatch):
    path = tmp_path / "deals.csv"
    path.write_text("Id,Amount,Close Date\n" + "".join(
        f"D{i},{i}.50,2024-01-{1 + i % 28:02d}\n" for i in range(25)))
    proposal = propose(warehouse, tenant_id, "opportunity", path)
    calls = {"n": 0}
    real_apply = Warehouse.apply

    def dying_apply(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return real_apply(self, *args, **kwargs)

    monkeypatch.setattr(Warehouse, "apply", dying_apply)
    with pytest.raises(RuntimeError):
        import_file(warehouse.engine, tenant_id, "opportunity", path, proposal.mapping,
                    snapshot=True, page_rows=10)
    assert len(_rows(warehouse, tenant_id)) == 20
    monkeypatch.setattr(Warehouse, "apply", real_apply)
    result = import_file(warehouse.engine, tenant_id, "opportunity", path, proposal.mapping,
                         snapshot=True, page_rows=10)
    assert result.resumed_after_line == 21 and result.upserted == 5
    rows = _rows(warehouse, tenant_id)
    assert len(rows) == 25 and not any(r["is_deleted"] for r in rows.values())
    assert _versions(warehouse, tenant_id) == 25


def test_the_cli_proposes_then_remembers_the_mapping_for_the_next_export(
        engine, database_url, tenant_id, tmp_path, monkeypatch):
    monkeypatch.setenv(config.DATABASE_URL_ENV, database_url)
    runner = CliRunner()
    path = tmp_path / "deals.csv"
    shutil.copy(EXPORTS / "hubspot_deals.csv", path)
    refused = runner.invoke(main, ["import", tenant_id, str(path)], input="n\n")
    assert refused.exit_code == 1 and "Deal Stage" in refused.output
    assert "-> stage" in refused.output and "'closedwon'" in refused.output
    dry = runner.invoke(main, ["import", tenant_id, str(path), "--dry-run"])
    assert dry.exit_code == 0 and "would import 4 rows: 4 upserted" in dry.output
    assert not _rows(Warehouse(engine), tenant_id)
    written = tmp_path / "mapping.json"
    runner.invoke(main, ["import", tenant_id, str(path), "--write-mapping", str(written)])
    assert FileMapping.from_json(__import__("json").loads(written.read_text())).id_column == (
        "Record ID")
    done = runner.invoke(main, ["import", tenant_id, str(path), "--yes"])
    assert done.exit_code == 0, done.output
    assert "imported 4 rows: 4 upserted" in done.output
    # The next export of the same shape: the remembered mapping, no question asked.
    later = tmp_path / "later.csv"
    later.write_text(path.read_text().replace('"5000"', '"5100"'))
    again = runner.invoke(main, ["import", tenant_id, str(later)])
    assert again.exit_code == 0, again.output
    assert "remembered mapping" in again.output and "1 upserted, 3 unchanged" in again.output
    assert runner.invoke(main, ["import", "nobody", str(later)]).exit_code == 1


def test_a_repeated_id_and_a_short_row_are_quarantined_by_line_from_a_zip(
        warehouse, tenant_id, tmp_path):
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Opportunity.csv", "Id,Name,Amount\nA1,First,10\nA2,Second\nA1,Again,12\n")
        zf.writestr("Account.csv", "Id,Name\nC1,Acme\n")
    _, result = _import(warehouse, tenant_id, archive)
    assert result.file == "export.zip:Opportunity.csv"
    assert result.errors == [(3, "2 values, the header has 3"),
                             (4, "the id 'A1' is on line 2 too")]
    assert _rows(warehouse, tenant_id)["A1"]["name"] == "First"
    assert warehouse.quarantine_count(tenant_id, "opportunity") == 2


def test_an_outcome_word_the_mapping_does_not_know_is_refused_not_defaulted(
        warehouse, tenant_id, tmp_path):
    path = tmp_path / "deals.csv"
    path.write_text("Deal - ID,Deal - Status\n1,won\n2,lost\n")
    proposal, _ = _import(warehouse, tenant_id, path)
    assert proposal.mapping.value_maps["is_won"] == {"won": "true", "lost": "false"}
    later = tmp_path / "later.csv"
    later.write_text("Deal - ID,Deal - Status\n1,won\n2,lost\n3,open\n")
    again, result = _import(warehouse, tenant_id, later)
    assert again.remembered and result.errors == [
        (4, "Deal - Status (is_closed): 'open' is not one of the mapping's values for it; "
            "Deal - Status (is_won): 'open' is not one of the mapping's values for it")]
    assert warehouse.quarantine_count(tenant_id, "opportunity") == 1


def test_a_salesforce_data_loader_extract_imports_by_its_api_names(warehouse, tenant_id):
    proposal, result = _import(warehouse, tenant_id, EXPORTS / "salesforce_dataloader.csv")
    mapping = proposal.mapping
    assert (mapping.id_column, mapping.modified_column) == ("ID", "LASTMODIFIEDDATE")
    assert {mapping.columns[c] for c in ("stage", "is_won", "is_closed", "owner_id")} == {
        "STAGENAME", "ISWON", "ISCLOSED", "OWNERID"}
    assert (result.upserted, result.quarantined) == (2, 1)
    line, reason = result.errors[0]
    assert line == 5 and "'maybe' is not a yes/no value" in reason
    assert "more digits than a float holds" in reason  # the warehouse's rule, by line
    acme = _rows(warehouse, tenant_id)["0065g00000DlAAAAA1"]
    assert (acme["is_won"], acme["amount"], acme["owner_id"]) == (True, 1234.56,
                                                                  "0055g00000OwNeRAAV")
    assert acme["source_modified_at"].isoformat() == "2024-01-15T10:22:33+00:00"
