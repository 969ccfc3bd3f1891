"""The structure docs/architecture.md states holds: imports run down the layers, each table
has one writer, and the document's tables of both are the ones the code declares."""

from __future__ import annotations

from pathlib import Path

import pytest

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


@pytest.mark.parametrize("section", ["layers", "writers"])
def test_architecture_doc_shows_the_declared_rules(section: str) -> None:
    """docs/architecture.md's tables are generated: paste the expected text to update."""
    expected = (rules.layers_markdown() if section == "layers"
                else rules.writers_markdown(writers()))
    shown = rules.generated_section(rules.DOC.read_text(), section)
    assert shown == expected, f"replace the {section} section of {rules.DOC} with:\n{expected}"
