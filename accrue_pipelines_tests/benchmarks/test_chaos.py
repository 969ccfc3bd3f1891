"""The short chaos run inside `make test` (the full one is `make chaos`, docs/chaos.md).

Why: F2, F3, F4 and "deletes flagged" must hold for every registered CRM when faults,
concurrent writes and a SIGKILLed sync process all happen at once, not only one at a
time. Parametrized over every CRM with a sandbox harness: two short trials per CRM and
backend (PostgreSQL when ACCRUE_TEST_POSTGRES_URL is set), each with random faults, a
mutator writing through the CRM's real client, the sync worker killed and restarted,
then a clean sync and an exact comparison with the org. A last test shows that the
comparison is not vacuous: a warehouse row changed behind the sync is caught.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sqlalchemy as sa

from accrue.schema import object_table
from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from benchmarks.chaos import (
    ChaosOptions,
    prepare_engine,
    run_chaos,
    sandboxed_crms,
    summary,
)
from benchmarks.chaos_compare import Comparison, compare_with_truth
from benchmarks.chaos_process import Target
from benchmarks.chaos_worker import Connection, make_connector
from connectors import registry
from connectors.sandbox_kit.harness import SandboxHarness
from connectors.spec import load

TRIALS = 2
TRIAL_SECONDS = 3.0
OPPORTUNITIES = 120
SEED = 4242
CRMS = sandboxed_crms()
@pytest.mark.parametrize("crm", CRMS)
def test_chaos_trials_leave_the_warehouse_equal_to_the_org(
    crm: str, database_url: str, tenant_id: str, tmp_path: Path
) -> None:
    backend = sa.make_url(database_url).get_backend_name()
    target = Target(backend, database_url, tenant_id, tmp_path, crm)
    options = ChaosOptions(trials=TRIALS, seed=SEED, opportunities=OPPORTUNITIES,
                           trial_seconds=TRIAL_SECONDS)
    out = io.StringIO()
    results = run_chaos(options, crm, [target], tmp_path, out)
    report = f"{out.getvalue()}\n{summary(results)}"

    assert len(results) == TRIALS, report
    for result in results:
        assert result.kills >= 1, report
        assert result.faults is None or result.faults >= 1, report
        assert result.mutations > 0, report
        assert result.rows > 0, report
        assert not result.worker_crashes, report
    assert sum(len(r.mismatches) for r in results) == 0, report


def test_the_comparison_catches_a_row_changed_behind_the_sync(tmp_path: Path) -> None:
    crm = CRMS[0]
    harness: SandboxHarness = load(str(registry.spec(crm).sandbox))()
    org = harness.start(tmp_path / "org.db", opportunities=20, seed=SEED)
    try:
        connection = Connection(crm, *org.connection())
        ours = Warehouse(prepare_engine(f"sqlite:///{tmp_path / 'ours.db'}", "ours", crm))
        truth = Warehouse(prepare_engine(f"sqlite:///{tmp_path / 'truth.db'}", "truth", crm))
        for warehouse, tenant in ((ours, "ours"), (truth, "truth")):
            with make_connector(connection) as connector:
                assert sync_object(warehouse, connector, tenant, "opportunity").complete
        clean = Comparison()
        compare_with_truth(ours, "ours", truth, "truth", org, ["opportunity"], set(), clean)
        assert clean.rows == org.live_count("opportunity")
        assert {m.kind for m in clean.mismatches} == {"row_not_in_change_log"}  # no log given
        table = object_table("opportunity")
        changed, hidden = sorted(ours.live_ids("ours", "opportunity"))[:2]
        with ours.engine.begin() as conn:
            conn.execute(table.update().where(table.c.source_id == changed)
                         .values(name="changed behind the sync"))
            conn.execute(table.update().where(table.c.source_id == hidden)
                         .values(is_deleted=True))
        caught = Comparison()
        compare_with_truth(ours, "ours", truth, "truth", org, ["opportunity"], set(), caught)
        kinds = {(m.kind, m.source_id) for m in caught.mismatches}
        assert ("fields_live", changed) in kinds and ("deleted_flag", hidden) in kinds
        assert ("live_ids", None) in kinds
    finally:
        org.stop()
