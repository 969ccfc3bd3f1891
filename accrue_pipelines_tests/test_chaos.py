"""The short chaos run inside `make test` (the full one is `make chaos`, docs/chaos.md).

Why: F2, F3, F4 and "deletes flagged" must hold when faults, concurrent writes
and a SIGKILLed sync process all happen at once, not only one at a time. Two
trials per backend (PostgreSQL when ACCRUE_TEST_POSTGRES_URL is set), each with
random faults, a mutator writing through the real client, the sync worker
killed and restarted, then a clean sync and an exact comparison with the org.
"""

from __future__ import annotations

import io
from pathlib import Path

import sqlalchemy as sa

from benchmarks.chaos import ChaosOptions, Target, run_chaos, summary

TRIALS = 2
TRIAL_SECONDS = 3.0
OPPORTUNITIES = 120
SEED = 4242


def test_chaos_trials_leave_the_warehouse_equal_to_the_sandbox(
    database_url: str, tenant_id: str, tmp_path: Path
) -> None:
    backend = sa.make_url(database_url).get_backend_name()
    target = Target(backend, database_url, tenant_id, tmp_path)
    options = ChaosOptions(trials=TRIALS, seed=SEED, opportunities=OPPORTUNITIES,
                           trial_seconds=TRIAL_SECONDS)
    out = io.StringIO()
    results = run_chaos(options, [target], tmp_path, out)
    report = f"{out.getvalue()}\n{summary(results)}"

    assert len(results) == TRIALS, report
    for result in results:
        assert result.kills >= 1, report
        assert result.faults >= 1, report
        assert result.mutations > 0, report
        assert result.rows > 0, report
        assert not result.worker_crashes, report
    assert sum(len(r.mismatches) for r in results) == 0, report
