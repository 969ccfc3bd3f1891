"""benchmarks.loader_compare on a tiny org: the row checks pass a clean load, and they catch
errors planted in the loaded tables and the duplicates and missed deletes of a loader that
has them (dlt, where the `compare` extra is installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import sqlalchemy as sa

from accrue.db import make_engine
from benchmarks import loader_compare

OPPORTUNITIES = 200


def test_row_checks_count_every_kind_of_difference() -> None:
    truth = {"contact": {"live": {"a", "b", "c"}, "deleted": {"d"}}}
    clean = loader_compare.row_checks(truth, {"contact": ["c", "a", "b"]})
    assert clean["contact"]["exact"] and clean["contact"]["rows"] == 3

    wrong = loader_compare.row_checks(truth, {"contact": ["a", "a", "d", "x"]})["contact"]
    assert not wrong["exact"]
    assert (wrong["missing"], wrong["duplicate_rows"], wrong["deleted_present"],
            wrong["unknown"]) == (2, 1, 1, 1)
    assert wrong["examples"] == {"missing": ["b", "c"], "duplicates": ["a"],
                                 "deleted_present": ["d"], "unknown": ["x"]}
    # Right count, wrong rows: still not exact.
    assert not loader_compare.row_checks(truth, {"contact": ["a", "a", "b"]})["contact"]["exact"]


def _plant(stage: str, loader: str, backend: str, url: str) -> None:
    """After Accrue's incremental sync: lose a contact and bring deleted opportunities back."""
    if (stage, loader) != ("incremental", "accrue"):
        return
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            lost = conn.execute(sa.text(
                "SELECT source_id FROM crm_contact WHERE NOT is_deleted ORDER BY source_id "
                "LIMIT 1")).scalar_one()
            conn.execute(sa.text("DELETE FROM crm_contact WHERE source_id = :id"), {"id": lost})
            conn.execute(sa.text("UPDATE crm_opportunity SET is_deleted = false "
                                 "WHERE is_deleted"))
    finally:
        engine.dispose()


def test_tiny_comparison_checks_rows_and_catches_planted_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCRUE_HOME", str(tmp_path))
    with_dlt = importlib.util.find_spec("dlt") is not None
    args = loader_compare.parse_args([
        "--opportunities", str(OPPORTUNITIES), "--repeat", "1", "--backends", "sqlite",
        "--no-ceilings", "--loaders", "accrue,dlt" if with_dlt else "accrue",
        "--output", str(tmp_path / "loaders.json")])
    results = loader_compare.run(args, hook=_plant)
    summary = results["summary"]["loaders"]
    deleted = results["rounds"][0]["change"]["deleted"]
    updated = results["rounds"][0]["change"]["updated_opportunities"]
    assert deleted["Opportunity"] >= 1 and updated >= 1

    accrue = summary["accrue"]["sqlite"]
    assert accrue["initial"]["records"] > OPPORTUNITIES
    assert all(c["exact"] for c in accrue["initial"]["checks"].values())
    checks = accrue["incremental"]["checks"]
    assert (checks["contact"]["missing"], checks["contact"]["exact"]) == (1, False)
    assert checks["opportunity"]["deleted_present"] == deleted["Opportunity"]
    untouched = set(checks) - {"contact", "opportunity"}
    assert all(checks[name]["exact"] for name in untouched)
    text = loader_compare.report(results)
    assert "accrue sqlite incremental contact" in text
    assert "accrue sqlite initial" not in text.split("row checks")[1]

    if with_dlt:
        dlt = summary["dlt"]["sqlite"]
        assert dlt["initial"]["records"] == accrue["initial"]["records"]
        assert all(c["exact"] for c in dlt["initial"]["checks"].values())
        # Merge without a primary key appends updated rows; REST `query` never sees deletes.
        opportunity = dlt["incremental"]["checks"]["opportunity"]
        assert opportunity["duplicate_rows"] == updated
        assert opportunity["deleted_present"] == deleted["Opportunity"]
        # Contacts are reloaded whole (replace): the deleted ones are gone.
        assert dlt["incremental"]["checks"]["contact"]["exact"]
