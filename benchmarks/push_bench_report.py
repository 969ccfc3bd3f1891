"""The push benchmark's summary and printed report (benchmarks.push_bench)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks.support.measure import text_table

TARGET_RECORDS_PER_SECOND = 3000  # issue 13: sustained, batches of 500 ...
TARGET_P99_MS = 250.0  # ... with p99 acknowledge latency under this


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[max(0, min(len(ordered) - 1, math.ceil(len(ordered) * q / 100) - 1))]


CHECK_FAILURES = ("missing", "duplicated", "unexpected", "acknowledged_not_stored",
                  "unacknowledged_batches")


def _median(rounds: Sequence[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rounds) if rounds else float("nan")


def summary(results: dict[str, Any]) -> dict[str, Any]:
    rounds = results["rounds"]
    kinds = {kind: [r for r in rounds if r["label"].startswith(kind)]
             for kind in ("paced", "saturation", "sigkill")}
    medians = {kind: {key: _median(group, key)
                      for key in ("records_per_second", "p50_ms", "p95_ms", "p99_ms")}
               for kind, group in kinds.items() if group and kind != "sigkill"}
    failures = {r["label"]: {k: r["check"][k] for k in CHECK_FAILURES if r["check"][k]}
                for r in rounds if any(r["check"][k] for k in CHECK_FAILURES)}
    paced = medians.get("paced", {})
    pooled = [ms for r in kinds["paced"] for ms in r["latencies_ms"]]
    return {
        "paced_pooled": {"batches": len(pooled), "p99_ms": percentile(pooled, 99)},
        "medians": medians, "check_failures": failures,
        "meets_rate": paced.get("records_per_second", 0) >= TARGET_RECORDS_PER_SECOND,
        "meets_p99": paced.get("p99_ms", float("inf")) < TARGET_P99_MS,
        "kills": sum(r["kills"] for r in kinds["sigkill"]),
    }


def report(results: dict[str, Any]) -> str:
    s = results["summary"]
    ref = results["reference"]
    rows = []
    for r in results["rounds"]:
        cpu = r["cpu"]
        load = "-" if r["kills"] else f"{cpu['load_avg']:.2f}"
        busy = "-" if r["kills"] else f"{cpu['busy_percent']:.0f}%"
        split = ("-" if r["kills"] else f"{cpu['server_cpu']:.0f}/{cpu['clients_cpu']:.0f}/"
                 f"{cpu['postgres_cpu']:.0f}/{cpu['other_cpu']:.0f}")
        rows.append([r["label"], f"{r['records_per_second']:,.0f}", f"{r['p50_ms']:.0f}",
                     f"{r['p95_ms']:.0f}", f"{r['p99_ms']:.0f}", f"{r['max_ms']:.0f}",
                     f"{r['seconds']:.1f}", load, busy, split,
                     f"{r['check']['sent_records']:,}", f"{r['check']['stored_records']:,}",
                     str(r["check"]["missing"]), str(r["check"]["duplicated"])])
    for kind, m in s["medians"].items():
        rows.append([f"median {kind}", f"{m['records_per_second']:,.0f}", f"{m['p50_ms']:.0f}",
                     f"{m['p95_ms']:.0f}", f"{m['p99_ms']:.0f}", "", "", "", "", "", "", "",
                     "", ""])
    table = text_table(["round", "records/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "s",
                    "load", "CPU busy", "CPU s srv/cli/pg/other", "sent", "stored", "lost",
                    "dup"], rows)
    kill = next((r for r in results["rounds"] if r["kills"]), None)
    paced = s["medians"].get("paced", {})
    pooled = s["paced_pooled"]
    lines = [
        f"push API: gunicorn {results['workers']} workers x {results['threads']} threads "
        f"(gthread), {results['clients']} client processes, batches of {results['batch']}, "
        f"paced at {results['rate']:,.0f} records/s; {results['postgres']}; "
        f"{results['machine']['cpus']} CPUs; load average (1, 5, 15 min) before the run "
        + ", ".join(f"{x:.2f}" for x in results["load_before"]),
        "",
        table,
        "",
        f"target: >= {TARGET_RECORDS_PER_SECOND:,} records/s accepted with p99 < "
        f"{TARGET_P99_MS:.0f} ms (paced medians: {paced.get('records_per_second', 0):,.0f} "
        f"records/s, p99 {paced.get('p99_ms', float('nan')):.0f} ms): "
        + ("met" if s["meets_rate"] and s["meets_p99"] else "MISSED")
        + f"; every paced batch together: p99 {pooled['p99_ms']:.0f} ms of "
        f"{pooled['batches']:,}",
        f"reference, the same bodies ({ref['body_kb']:.0f} KB) by bare INSERT, one per "
        f"transaction on one connection: {ref['records_per_second']:,.0f} records/s "
        f"({ref['insert_ms']:.1f} ms a batch); in-process per batch: signature "
        f"{ref['sign_verify_ms']:.2f} ms, parse + validate {ref['parse_validate_ms']:.1f} ms",
    ]
    if kill is not None:
        c = kill["check"]
        lines.append(
            f"SIGKILL round: {kill['kills']} kills of the master and workers in "
            f"{kill['seconds']:.0f} s; {c['sent_batches']:,} batches / {c['sent_records']:,} "
            f"records sent, {c['inbox_rows']:,} inbox rows / {c['stored_records']:,} records "
            f"stored; lost {c['missing']}, duplicated {c['duplicated']}, unexpected "
            f"{c['unexpected']}, acknowledged but not stored {c['acknowledged_not_stored']}, "
            f"never acknowledged {c['unacknowledged_batches']}; replays answered 200: "
            f"{kill['replays_acknowledged']}; client retries {kill['retries']}")
    lines.append("every record: " + ("each sent record stored exactly once, every "
                                     "acknowledged batch stored" if not s["check_failures"]
                                     else f"FAILED {s['check_failures']}"))
    lines.append("CPU s srv/cli/pg/other: gunicorn, client processes, the PostgreSQL backends "
                 "serving the bench's database, the rest of the machine (other users "
                 "included); load: 1-minute load average")
    return "\n".join(lines)
