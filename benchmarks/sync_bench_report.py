"""What `make bench` (benchmarks/sync_bench.py) prints: medians over the rounds and the
tables of the load, its ceilings and where the time goes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.support.measure import median, rate, text_table
from benchmarks.sync_bench_phases import PHASE_LABELS, PHASES


def summarize(rounds: list[dict[str, Any]], backends: list[str]) -> dict[str, Any]:
    """Medians over rounds of every numeric figure, per backend, phase and object."""
    summary: dict[str, Any] = {}
    for name in backends:
        per_backend: dict[str, Any] = {}
        for phase in PHASES:
            runs = [r["backends"][name][phase] for r in rounds]
            figures = {
                key: median([run.get(key) for run in runs])
                for key, value in runs[0].items()
                if isinstance(value, int | float) or value is None
            }
            objects = []
            for index, entry in enumerate(runs[0]["objects"]):
                objects.append(
                    {
                        "object": entry["object"],
                        **{
                            key: median([run["objects"][index][key] for run in runs])
                            for key, value in entry.items()
                            if isinstance(value, int | float)
                        },
                    }
                )
            figures["objects"] = objects
            per_backend[phase] = figures
        per_backend["ratios"] = {
            key: median([r["backends"][name]["ratios"][key] for r in rounds])
            for key in rounds[0]["backends"][name]["ratios"]
        }
        summary[name] = per_backend
    return summary


# ============================================================ reporting



def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def report(results: Mapping[str, Any]) -> str:
    """The tables `make bench` prints (medians when rounds > 1)."""
    summary = results["summary"]
    seeding = results["sandbox"]
    seeded = (
        f"cached (seeded in {seeding['seconds']:.1f}s on {seeding['date'][:10]})"
        if seeding["cached"]
        else f"{seeding['seconds']:.1f}s"
    )
    rounds = results["repeat"]
    lines = [
        f"Sync benchmark — {results['opportunities']:,} opportunities (seed {results['seed']}), "
        f"{rounds} round{'s' if rounds > 1 else ''}"
        + (" (medians)" if rounds > 1 else ""),
        f"machine: {results['machine']['cpus']} CPUs, {results['machine']['platform']}, "
        f"Python {results['machine']['python']}",
        f"sandbox org: {sum(seeding['counts'].values()):,} records seeded; seeding {seeded}",
        f"1% change: {results['change']['changed']:,} opportunities updated via sObject "
        f"Collections in {results['change']['seconds']:.1f}s (not timed)",
    ]
    lines.extend(f"note: {note}" for note in results["notes"])
    headers = ["backend / phase", "records", "wall s", "records/s", "peak RSS MB"]
    rows = []
    for name, figures in summary.items():
        for phase in PHASES:
            f = figures[phase]
            rows.append(
                [
                    f"{name} {PHASE_LABELS[phase]}",
                    _n(f["records"]),
                    _s(f["wall_seconds"]),
                    _n(f["records_per_second"]),
                    _n(f["peak_rss_mb"]),
                ]
            )
    lines += ["", text_table(headers, rows)]

    headers = [
        "backend",
        "load rec/s",
        "fetch ceiling rec/s",
        "write ceiling rows/s",
        "e2e ÷ fetch",
        "e2e ÷ write",
        "e2e ÷ lower",
        "apply rows/s",
        "apply ÷ write",
        "incremental ÷ initial wall",
    ]
    rows = []
    for name, figures in summary.items():
        ratios = figures["ratios"]
        rows.append(
            [
                name,
                _n(ratios["load_records_per_second"]),
                _n(ratios["fetch_records_per_second"]),
                _n(ratios["raw_rows_per_second"]),
                f"{ratios['load_end_to_end_vs_fetch']:.2f}",
                f"{ratios['load_end_to_end_vs_raw']:.2f}",
                f"{ratios['load_end_to_end_vs_lower_ceiling']:.2f}",
                _n(ratios["load_write_rows_per_second"]),
                f"{ratios['load_write_vs_raw']:.2f}",
                f"{ratios['incremental_vs_initial_wall'] * 100:.1f} %",
            ]
        )
    lines += ["", text_table(headers, rows)]

    headers = [
        "where the time goes",
        "wall s",
        "HTTP s",
        "JSON s",
        "map+engine s",
        "apply s",
        "SQL exec s",
        "sandbox CPU s",
        "DB server CPU s",
        "sync CPU s",
    ]
    rows = []
    for name, figures in summary.items():
        for phase in ("initial", "incremental"):
            f = figures[phase]
            other = f["wall_seconds"] - f["http_seconds"] - f["json_seconds"] - f["write_seconds"]
            rows.append(
                [
                    f"{name} {PHASE_LABELS[phase]}",
                    _s(f["wall_seconds"]),
                    _s(f["http_seconds"]),
                    _s(f["json_seconds"]),
                    _s(other),
                    _s(f["write_seconds"]),
                    _s(f["sql_execute_seconds"]),
                    _s(f["sandbox_cpu_seconds"]),
                    _s(f["db_server_cpu_seconds"]),
                    _s(f["client_cpu_seconds"]),
                ]
            )
        f = figures["raw"]
        rows.append(
            [
                f"{name} {PHASE_LABELS['raw']}",
                _s(f["wall_seconds"]),
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                "-",
                _s(f["client_cpu_seconds"]),
            ]
        )
    f = summary[next(iter(summary))]["fetch"]
    rows.append(
        [
            PHASE_LABELS["fetch"],
            _s(f["wall_seconds"]),
            _s(f["http_seconds"]),
            _s(f["json_seconds"]),
            _s(f["wall_seconds"] - f["http_seconds"] - f["json_seconds"]),
            "-",
            "-",
            _s(f["sandbox_cpu_seconds"]),
            "-",
            _s(f["client_cpu_seconds"]),
        ]
    )
    lines += ["", text_table(headers, rows)]

    names = list(summary)
    headers = ["initial load by object"]
    for name in names:
        headers += [f"{name} records", f"{name} wall s", f"{name} rec/s", f"{name} apply s"]
    rows = []
    for index, entry in enumerate(summary[names[0]]["initial"]["objects"]):
        row = [entry["object"]]
        for name in names:
            obj = summary[name]["initial"]["objects"][index]
            row += [
                _n(obj["records"]),
                _s(obj["wall_seconds"]),
                _n(rate(obj["records"], obj["wall_seconds"])),
                _s(obj["write_seconds"]),
            ]
        rows.append(row)
    lines += ["", text_table(headers, rows)]
    lines += [
        "",
        "wall s: the phase's elapsed time in its own process; records/s = records ÷ wall s;",
        "peak RSS: that process's own high-water mark (VmHWM). HTTP s: the connector's",
        "requests to the sandbox (server work + transfer); JSON s: client-side decoding;",
        "apply s: Warehouse.apply (row building, SQL, commit), of which SQL exec s is in",
        "the DB driver; map+engine s: the rest (mapping records, sync engine).",
        "Ceilings, same rows, same run: fetch = the connector's own read path (Bulk API 2.0",
        "where its threshold says so) writing nothing; write = the driver's bulk path (sqlite3",
        "executemany, PostgreSQL COPY) into empty tables shaped like crm_*, one transaction.",
        "e2e ÷ X = load records/s ÷ ceiling X; lower = the slower ceiling;",
        "apply ÷ write = (rows ÷ apply s) ÷ write ceiling rows/s.",
    ]
    return "\n".join(lines)
