"""The structure docs/architecture.md states holds: imports run down the layers, each table
has one writer, others read the warehouse's tables through it, and the document's tables
of the first two are the ones the code declares."""

from __future__ import annotations

from pathlib import Path

import pytest

from accrue import schema
from accrue.schema import metadata, writers
from accrue_pipelines_tests import architecture_rules as rules


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_no_import_runs_up_the_layers() -> None:
    found = rules.import_violations(rules.REPO)
    assert not found, "imports running up the layers:\n" + "\n".join(map(str, found))


def test_every_package_has_a_layer() -> None:
    """A new top-level package cannot escape the check by not being listed."""
    packages = {p.parent.name for p in rules.REPO.glob("*/__init__.py")}
    assert packages == set(rules.PACKAGES), packages ^ set(rules.PACKAGES)


def test_the_import_check_catches_every_kind_of_upward_import(tmp_path: Path) -> None:
    root = _tree(tmp_path, {
        "connectors/fine.py": "import json\nfrom connectors import base\n",
        "connectors/lazy.py": "def f():\n    from accrue import db\n",
        "accrue/up.py": "import os\nimport accrue_pipelines.jobs\n",
        "accrue/by_name.py": '"""Starts onboarding_app.wsgi:app (prose)."""\n'
                             'ARGS = ["gunicorn", "onboarding_app.wsgi:app"]\n',
        "accrue/relative.py": "from . import db\n",
        "accrue_pipelines/side.py": "x = 1\nfrom onboarding_app import store\n",
        "onboarding_app/side.py": "class C:\n    def m(self):\n        import accrue_pipelines\n",
        "onboarding_app/down.py": "from accrue import db\nfrom connectors import base\n",
        "accrue_cli/root.py": "import accrue_pipelines, onboarding_app, accrue, connectors\n",
        "benchmarks/b.py": "from accrue_cli import demo\nimport accrue_pipelines_tests\n",
        "accrue_pipelines_tests/t.py": "import benchmarks, accrue_cli\n",
    })
    found = {(v.path, v.line) for v in rules.import_violations(root)}
    assert found == {("connectors/lazy.py", 2), ("accrue/up.py", 2), ("accrue/by_name.py", 2),
                     ("accrue_pipelines/side.py", 2), ("onboarding_app/side.py", 3)}
    assert "accrue/up.py:2: accrue imports accrue_pipelines (may import: connectors)" in {
        str(v) for v in rules.import_violations(root)}


def test_every_table_declares_its_writer_and_the_writer_exists() -> None:
    declared = writers()
    assert set(declared) == set(metadata.tables)
    for table, path in declared.items():
        assert (rules.REPO / path).exists() or (rules.REPO / f"{path}.py").exists(), \
            f"{table}: its writer {path} does not exist"


def test_only_its_writer_writes_a_table() -> None:
    found = rules.writer_violations(rules.REPO, writers())
    assert not found, "tables written outside their writer:\n" + "\n".join(map(str, found))


def test_the_writer_check_catches_every_kind_of_write(tmp_path: Path) -> None:
    owners = {"audit_event": "accrue/audit.py", "sync_run": "accrue/warehouse"}
    root = _tree(tmp_path, {
        "accrue/audit.py": "from accrue.schema import audit_event\naudit_event.insert()\n",
        "onboarding_app/a.py": "import sqlalchemy as sa\nfrom accrue.schema import audit_event\n"
                               "sa.insert(audit_event)\n",
        "onboarding_app/read.py": "from accrue.schema import audit_event\n"
                                  "sa.select(audit_event)\n",
        "accrue/b.py": "from accrue import schema\nschema.audit_event.update()\n",
        "accrue/c.py": "from accrue.schema import audit_event as log\ndef f():\n"
                       "    q = log\n    return q.delete()\n",
        "accrue/d.py": "from accrue.schema import sync_run\n"
                       "dialect_insert(d)(sync_run).values()\n",
        "benchmarks/e.py": 'SQL = "DELETE FROM audit_event WHERE id = 1"\n',
        "benchmarks/prose.py": '"""Never UPDATE audit_event by hand."""\n',
        "accrue/migrations/versions/0001_x.py": 'op.execute("UPDATE audit_event SET x = 1")\n',
        "accrue/warehouse.py": "from accrue.schema import sync_run\nsync_run.update()\n",
        "accrue/warehouse/runs.py": "from accrue.schema import sync_run\nsync_run.insert()\n",
        "accrue/sync.py": "from accrue.schema import sync_run\nsync_run.delete()\n",
        "accrue/warehouse_extra.py": "from accrue.schema import sync_run\nsync_run.delete()\n",
    })
    found = {(v.path, v.line) for v in rules.writer_violations(root, owners)}
    assert found == {("onboarding_app/a.py", 3), ("accrue/b.py", 2), ("accrue/c.py", 4),
                     ("accrue/d.py", 2), ("benchmarks/e.py", 1), ("accrue/sync.py", 2),
                     ("accrue/warehouse_extra.py", 2)}


def test_the_warehouse_tables_the_read_check_guards_are_the_warehouses() -> None:
    declared = writers()
    for name, table in rules.WAREHOUSE_TABLES.items():
        assert hasattr(schema, name), f"accrue.schema has no {name}"
        if table in metadata.tables:  # crm_record_history is a view
            assert declared[table] == rules.WAREHOUSE, table
    assert all(hasattr(schema, name) for name in rules.WAREHOUSE_HELPERS)


def test_others_read_the_warehouse_tables_through_the_warehouse() -> None:
    found = rules.reader_violations(rules.REPO)
    assert not found, ("warehouse tables read outside accrue/warehouse (add a read to its "
                       "API instead):\n" + "\n".join(map(str, found)))


def test_the_reader_check_catches_every_kind_of_read(tmp_path: Path) -> None:
    imports = "import sqlalchemy as sa\nfrom accrue.schema import sync_run, record_history\n"
    root = _tree(tmp_path, {
        "accrue/warehouse/runs.py": imports + "sa.select(sync_run)\n",
        "accrue/schema/warehouse.py": "sync_run = sa.Table('sync_run')\nsa.select(sync_run)\n",
        "accrue/select.py": imports + "sa.select(sync_run.c.id)\n",
        "accrue/exists.py": imports + "sa.exists().where(sync_run.c.status == 'succeeded')\n",
        "accrue/join.py": imports + "q = sa.select(t).join(record_history, t.c.id == 1)\n",
        "accrue/aliased.py": "from accrue.schema import crm_change_log as log\n"
                             "def f():\n    return sa.select(log.c.id)\n",
        "accrue/module.py": "from accrue import schema\nschema.crm_quarantine.c.id\n",
        "accrue/helper.py": "from accrue.schema import change_log_raw\nchange_log_raw(t)\n",
        "onboarding_app/raw.py": 'SQL = "SELECT id FROM sync_state WHERE x = 1"\n',
        "accrue_pipelines/raw_join.py": 'SQL = "SELECT 1 FROM t JOIN crm_record_history h"\n',
        "accrue/prose.py": '"""Reads nothing FROM sync_run itself."""\nx = "sync_run"\n',
        "accrue/other_name.py": "from accrue_pipelines.summary import pipeline_summary\n"
                                "pipeline_summary()\n",
        "benchmarks/truth.py": imports + "sa.select(sync_run)\n",
        "accrue/migrations/versions/0001_x.py": 'op.execute("SELECT 1 FROM sync_run")\n',
        "accrue_pipelines_tests/t.py": imports + "sa.select(sync_run)\n",
    })
    found = {(v.path, v.line) for v in rules.reader_violations(root)}
    assert found == {("accrue/select.py", 3), ("accrue/exists.py", 3), ("accrue/join.py", 3),
                     ("accrue/aliased.py", 3), ("accrue/module.py", 2), ("accrue/helper.py", 2),
                     ("onboarding_app/raw.py", 1), ("accrue_pipelines/raw_join.py", 1)}
    assert "accrue/select.py:3: reads sync_run: use accrue/warehouse's read API" in {
        str(v) for v in rules.reader_violations(root)}


@pytest.mark.parametrize("section", ["layers", "writers", "warehouse-reads"])
def test_architecture_doc_shows_the_declared_rules(section: str) -> None:
    """docs/architecture.md's tables are generated: paste the expected text to update."""
    expected = {"layers": rules.layers_markdown,
                "writers": lambda: rules.writers_markdown(writers()),
                "warehouse-reads": rules.warehouse_reads_markdown}[section]()
    shown = rules.generated_section(rules.DOC.read_text(), section)
    assert shown == expected, f"replace the {section} section of {rules.DOC} with:\n{expected}"
