"""The push benchmark's correctness machinery (benchmarks.push_bench), at small scale and
untimed: gunicorn on PostgreSQL SIGKILLed under load loses and duplicates nothing, and
the record-by-record comparison does catch a lost, a duplicated and an unexpected record.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import redis
from sqlalchemy.engine import Engine

from accrue import crypto, db
from accrue.push import inbox
from benchmarks import push_bench
from benchmarks.push_bench_client import ClientSpec, batch_body, webhook_id

REDIS_URL = os.environ.get("ACCRUE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _result(client: int, batches: list[tuple[int, int]]) -> dict[str, Any]:
    """A client's report: (batch number, answer status; 0 = never acknowledged)."""
    return {"client": client, "batches": [{"batch": b, "status": s} for b, s in batches]}


def test_comparison_catches_loss_duplicates_and_strays(database_url: str) -> None:
    engine: Engine = db.make_engine(database_url)
    tenant_id = "bench-verify"
    push_bench.push_tenant(engine, tenant_id, crypto.Keyring.from_env())
    spec = ClientSpec("", 0, tenant_id, "", "", 0, 3, 0)
    for batch in (0, 1):
        body = batch_body(spec, batch)
        inbox.store(engine, tenant_id, webhook_id(tenant_id, 0, batch), body, {}, 3)
    clean = push_bench.verify(engine, tenant_id, [_result(0, [(0, 202), (1, 200)])], 3)
    assert clean == {"sent_records": 6, "sent_batches": 2, "stored_records": 6,
                     "inbox_rows": 2, "missing": 0, "duplicated": 0, "unexpected": 0,
                     "acknowledged_not_stored": 0, "unacknowledged_batches": 0}

    # Batch 2 acknowledged but never stored; batch 3 sent, never acknowledged nor stored.
    lost = push_bench.verify(engine, tenant_id,
                             [_result(0, [(0, 202), (1, 202), (2, 202), (3, 0)])], 3)
    assert (lost["missing"], lost["acknowledged_not_stored"],
            lost["unacknowledged_batches"]) == (6, 1, 1)

    # The same records stored again under another webhook-id: duplicates, found per record.
    again = json.loads(batch_body(spec, 1))
    inbox.store(engine, tenant_id, "msg_other", json.dumps(again).encode(), {}, 3)
    duplicated = push_bench.verify(engine, tenant_id, [_result(0, [(0, 202), (1, 202)])], 3)
    assert duplicated["duplicated"] == 3 and duplicated["missing"] == 0

    # Only batch 0 reported sent: batch 1's records in the inbox are strays.
    strays = push_bench.verify(engine, tenant_id, [_result(0, [(0, 202)])], 3)
    assert strays["unexpected"] == 3
    engine.dispose()


def test_tiny_bench_with_a_sigkill_loses_and_duplicates_nothing() -> None:
    server = os.environ.get("ACCRUE_TEST_POSTGRES_URL", "").strip()
    if not server:
        pytest.skip("needs PostgreSQL: set ACCRUE_TEST_POSTGRES_URL")
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        pytest.skip(f"needs Redis at {REDIS_URL} (production counts rate limits there)")
    args = push_bench.parse_args([
        "--rounds", "1", "--seconds", "1", "--warmup", "0", "--clients", "2", "--batch", "20",
        "--kills", "1", "--reference-batches", "3", "--postgres-url", server,
        "--redis-url", REDIS_URL])
    results = push_bench.run(args)
    summary = push_bench.summary(results)
    assert summary["check_failures"] == {}
    assert summary["kills"] == 1
    labels = [r["label"] for r in results["rounds"]]
    assert labels == ["paced 1", "saturation 1", "sigkill"]
    for round_ in results["rounds"]:
        check = round_["check"]
        assert check["sent_records"] > 0
        assert check["stored_records"] == check["sent_records"]
        assert check["inbox_rows"] == check["sent_batches"]
    killed = results["rounds"][-1]
    # The kill really hit the load: some sends failed and were retried.
    assert killed["retries"], "the SIGKILL interrupted no request"
    assert "SIGKILL round: 1 kills" in push_bench.report({**results, "summary": summary})


def test_percentile_is_nearest_rank() -> None:
    from benchmarks.push_bench_report import percentile

    assert percentile(list(range(1, 101)), 99) == 99
    assert percentile(list(range(1, 91)), 99) == 90  # 90 samples: p99 is the slowest
    assert percentile([5.0], 50) == 5.0
