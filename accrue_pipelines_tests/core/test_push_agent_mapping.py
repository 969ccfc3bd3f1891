"""The push agent's mapping file, secret file, checkpoint and export-folder mode (issue 13,
part 3): every mistake named with the file and what to change; full exports pushed as
updates and deletes. The database mode and the crash cases are in test_push_agent.py."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import Engine

from accrue.agent import checkpoint, mapping, runner
from accrue.push.credentials import IssuedSecret
from accrue.push.process import process_inbox
from accrue_pipelines_tests.concierge.test_concierge_app import make_app
from accrue_pipelines_tests.concierge.test_push_api import make_push_tenant
from accrue_pipelines_tests.core.test_push_agent import SECRET_ENV, flask_client
from connectors.sandbox_kit import agent_db


@pytest.fixture
def app(database_url: str) -> Flask:
    return make_app(database_url)


@pytest.fixture
def issued(engine: Engine, tenant_id: str) -> IssuedSecret:
    return make_push_tenant(engine, tenant_id)


def test_a_secret_file_others_can_read_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "push.secret"
    secret.write_text("whsec_" + "F" * 43 + "=\n")
    secret.chmod(0o644)
    path = tmp_path / "agent.toml"
    path.write_text(MINIMAL.replace('secret_env = "X"', f'secret_file = "{secret.name}"'))
    config = mapping.load(path)
    with pytest.raises(runner.AgentError, match="chmod 600"):
        runner.read_secret(config)
    secret.chmod(0o600)
    assert runner.read_secret(config) == "whsec_" + "F" * 43 + "="


MINIMAL = """
[push]
url = "http://127.0.0.1:5050"
tenant = "t1"
client_id = "pc_1"
secret_env = "X"

[source]
database_url = "sqlite:///c2crm.db"

[[objects]]
object = "account"
table = "c2_companies"
id = "company_no"
updated_at = "changed_on"
fields = { company_name = "name" }
"""


@pytest.mark.parametrize(("change", "message"), [
    (('object = "account"', 'object = "firm"'), "'firm'.*not a common object"),
    (('fields = { company_name = "name" }', 'fields = { company_name = "title" }'),
     "title is no field of account"),
    (('id = "company_no"\n', ""), "'id' is missing"),
    (('secret_env = "X"', ""), "exactly one of 'secret_env'"),
    (('table = "c2_companies"', 'files = "*.csv"'), "'files' does not apply to a database"),
    (("[push]", "[push\n"), "not valid TOML"),
    (('url = "http://127.0.0.1:5050"', 'url = "127.0.0.1:5050"'), "must be http"),
    (('tenant = "t1"', 'tenant = "t1"\nbatch_size = 5000'), "'batch_size' must be"),
])
def test_mapping_file_mistakes_are_named(tmp_path: Path, change: tuple[str, str],
                                         message: str) -> None:
    path = tmp_path / "agent.toml"
    assert change[0] in MINIMAL
    path.write_text(MINIMAL.replace(*change))
    with pytest.raises(mapping.MappingError, match=message) as error:
        mapping.load(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(("change", "message"), [
    (('id = "company_no"', 'id = "company_nr"'),
     r"table c2_companies has no column 'company_nr' \(its columns: company_no, company_name"),
    (('fields = { company_name = "name" }', 'fields = { firm = "name" }'),
     "has no column 'firm'"),
    (('table = "c2_companies"', 'table = "c2_firms"'), "no table 'c2_firms'.*c2_companies"),
])
def test_columns_the_database_lacks_are_named(tmp_path: Path, change: tuple[str, str],
                                              message: str) -> None:
    agent_db.build(f"sqlite:///{tmp_path / 'c2crm.db'}", 10, seed=1)
    path = tmp_path / "agent.toml"
    path.write_text(MINIMAL.replace(*change).replace(
        "sqlite:///c2crm.db", f"sqlite:///{tmp_path / 'c2crm.db'}"))
    with pytest.raises(runner.AgentError, match=message):
        runner.run_once(mapping.load(path), None, dry_run=True)


def test_a_checkpoint_of_another_destination_is_refused(tmp_path: Path) -> None:
    state = checkpoint.Checkpoint(tmp_path / "cp.json", "http://a/v1/push/t/records")
    state.state("account").after = ("2026-01-01", 5)
    state.save()
    assert checkpoint.load(tmp_path / "cp.json", "http://a/v1/push/t/records").state(
        "account").after == ("2026-01-01", 5)
    with pytest.raises(checkpoint.CheckpointError, match="another checkpoint file"):
        checkpoint.load(tmp_path / "cp.json", "http://b/v1/push/t/records")


EXPORT_MAPPING = """
[push]
url = "http://concierge.test"
tenant = "{tenant}"
client_id = "{client_id}"
secret_env = "{secret_env}"

[source]
exports = "exports"
decimal = ","
date_order = "DMY"

[[objects]]
object = "opportunity"
files = "deals-*.csv"
id = "Deal No"
deletes_by_absence = true
fields = {{ "Title" = "name", "Value" = "amount", "Close" = "close_date" }}
extra = ["Region"]
"""


def test_export_folder_full_exports_update_and_mark_missing_ids_deleted(
        app: Flask, engine: Engine, tenant_id: str, issued: IssuedSecret, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, issued.secret)
    folder = tmp_path / "exports"
    folder.mkdir()
    path = tmp_path / "agent.toml"
    path.write_text(EXPORT_MAPPING.format(tenant=tenant_id, client_id=issued.client_id,
                                          secret_env=SECRET_ENV))
    config = mapping.load(path)
    client = flask_client(config, app)
    first = folder / "deals-2026-11-01.csv"
    first.write_bytes("\ufeffDeal No;Title;Value;Close;Region\n"
                      "D1;Öl & Gas;1.234,50;15.01.2027;EMEA\n"
                      "D2;Renewal;900;16.01.2027;APAC\n"
                      'D3;"Two\nlines";10;17.01.2027;EMEA\n'.encode())
    assert runner.run_once(config, client).of("opportunity").changes == 3
    process_inbox(engine, tenant_id)
    rows = {r["source_id"]: r for r in _rows(engine, tenant_id)}
    assert rows["D1"]["amount"] == 1234.5 and str(rows["D1"]["close_date"]) == "2027-01-15"
    assert rows["D1"]["name"] == "Öl & Gas" and rows["D3"]["name"] == "Two\nlines"
    assert rows["D1"]["raw"]["Region"] == "EMEA"
    # The same file again: nothing. A newer full export: D2 changed, D3 gone.
    assert runner.run_once(config, client).changes == 0
    second = folder / "deals-2026-11-02.csv"
    second.write_text("Deal No;Title;Value;Close;Region\nD1;Öl & Gas;1.234,50;15.01.2027;EMEA\n"
                      "D2;Renewal;950;16.01.2027;APAC\n", encoding="cp1252")
    os.utime(second, (first.stat().st_mtime + 10, first.stat().st_mtime + 10))
    summary = runner.run_once(config, client).of("opportunity")
    assert summary.changes == 2 and summary.deletes == 1
    process_inbox(engine, tenant_id)
    rows = {r["source_id"]: r for r in _rows(engine, tenant_id)}
    assert rows["D2"]["amount"] == 950 and rows["D3"]["is_deleted"]
    assert not rows["D1"]["is_deleted"] and not rows["D2"]["is_deleted"]


def _rows(engine: Engine, tenant_id: str) -> list[dict[str, Any]]:
    from accrue.schema import object_table

    table = object_table("opportunity")
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(
            sa.select(table).where(table.c.tenant_id == tenant_id)).mappings()]
