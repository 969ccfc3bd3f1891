"""Accrue's initial load against other loaders on the same sandbox org, in one run.

Why: issue 15 aims at ≥ 2× the records/s of the best other loader "with exactly the
source's rows"; this measures both halves of that sentence side by side.

Every round starts from a fresh copy of the cached org (`sync_bench.ensure_seeded`), served
by `sync_bench.SandboxProcess`, and on each backend runs, in an order that alternates per
round so neither loader always goes first:

* **accrue**: our initial load (`sync_bench`'s own timed phase, in its own process);
* **dlt**: dlt loading the same objects the way dlt's verified Salesforce source does
  (`benchmarks/loader_compare_dlt.py`, in its own process).

Then 1 % of the opportunities are updated and some contacts and opportunities deleted
(sObject Collections), and every loader runs once more: its incremental sync.
After each run the loaded tables are compared with the sandbox, per object: rows against
the source's live records, ids missing, duplicate ids, deleted records still present,
ids the source never had. The fetch and write ceilings of `make bench` are measured
once per round beside them.

`python -m benchmarks.loader_compare --help`; results go to <ACCRUE_HOME>/bench/loaders.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from accrue.db import make_engine
from accrue.schema import OBJECT_TABLES
from benchmarks import sync_bench
from benchmarks.support.databases import (
    BENCH_POSTGRES_ENV,
    Backend,
    ScratchPostgres,
    default_postgres_url,
    postgres_backend,
    sqlite_backend,
    work_dir,
)
from benchmarks.support.measure import log, median, rate, text_table
from benchmarks.support.opportunity_changes import COLLECTION_SIZE, sandbox_client
from benchmarks.support.processes import BenchError, finish_benchmark, run_child
from benchmarks.sync_bench import SandboxProcess
from benchmarks.sync_bench_phases import PHASE_TIMEOUT_SECONDS
from benchmarks.sync_ceilings import TENANT
from connectors.common_model import COMMON_OBJECTS
from connectors.salesforce.mapping import sources

LOADERS = ("accrue", "dlt")
STAGES = ("initial", "incremental")
DEFAULT_OPPORTUNITIES = 10_000
DELETE_FRACTION = 0.005  # of contacts and of opportunities, deleted before the incremental
TARGET_RATIO = 2.0
# Called after each load, before its rows are read back: (stage, loader, backend, url).
Hook = Callable[[str, str, str, str], None]


# ============================================================ the source and the checks


def source_truth(sandbox: SandboxProcess) -> dict[str, dict[str, set[str]]]:
    """Per common object: the ids of the source's live records and of its deleted ones."""
    truth: dict[str, dict[str, set[str]]] = {}
    with sandbox_client(sandbox.url, sandbox.credentials) as sf:
        for name in COMMON_OBJECTS:
            live: set[str] = set()
            deleted: set[str] = set()
            for sobject in sources(name):
                live.update(r["Id"] for r in sf.query_all_iter(f"SELECT Id FROM {sobject}"))
                deleted.update(r["Id"] for r in sf.query_all_iter(
                    f"SELECT Id FROM {sobject}", include_deleted=True))
            truth[name] = {"live": live, "deleted": deleted - live}
    return truth


def row_checks(truth: Mapping[str, Mapping[str, set[str]]],
               loaded: Mapping[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Per object, how the loaded rows differ from the source's live records.

    `loaded` lists the id of every row a loader presents as current (duplicates kept).
    """
    checks: dict[str, dict[str, Any]] = {}
    for name, source in truth.items():
        ids = loaded.get(name, [])
        counts = Counter(ids)
        present = set(counts)
        missing = source["live"] - present
        deleted = present & source["deleted"]
        unknown = present - source["live"] - source["deleted"]
        duplicates = sorted(i for i, n in counts.items() if n > 1)
        checks[name] = {
            "source": len(source["live"]),
            "rows": len(ids),
            "missing": len(missing),
            "duplicate_rows": len(ids) - len(present),
            "deleted_present": len(deleted),
            "unknown": len(unknown),
            "examples": {k: sorted(v)[:3] for k, v in (("missing", missing), (
                "duplicates", duplicates), ("deleted_present", deleted), ("unknown", unknown))
                if v},
        }
        checks[name]["exact"] = (len(ids) == len(source["live"]) and not missing
                                 and not deleted and not unknown and len(ids) == len(present))
    return checks


def accrue_ids(url: str) -> dict[str, list[str]]:
    """The source id of every current (not deleted) row in each crm_* table."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: list(conn.execute(
                    sa.select(table.c.source_id).where(table.c.tenant_id == TENANT,
                                                       sa.not_(table.c.is_deleted))).scalars())
                for name, table in OBJECT_TABLES.items()
            }
    finally:
        engine.dispose()


def change_source(sandbox: SandboxProcess, seed: int, round_number: int) -> dict[str, Any]:
    """Update 1 % of the opportunities (as `make bench` does) and delete some contacts and
    opportunities, through sObject Collections."""
    change = sync_bench.change_opportunities(sandbox, sync_bench.CHANGE_FRACTION, seed,
                                             round_number)
    deleted: dict[str, int] = {}
    rng = random.Random(seed + 1)
    with sandbox_client(sandbox.url, sandbox.credentials) as sf:
        for sobject in ("Contact", "Opportunity"):
            ids = sorted(r["Id"] for r in sf.query_all_iter(f"SELECT Id FROM {sobject}"))
            sample = rng.sample(ids, max(1, round(len(ids) * DELETE_FRACTION)))
            for start in range(0, len(sample), COLLECTION_SIZE):
                chunk = sample[start:start + COLLECTION_SIZE]
                results = sf.restful("composite/sobjects", method="DELETE",
                                     params={"ids": ",".join(chunk), "allOrNone": "false"})
                failed = [r for r in results if not r.get("success")]
                if failed:
                    raise BenchError(
                        f"{len(failed)} {sobject} deletes failed, e.g. {failed[0]}")
            deleted[sobject] = len(sample)
    return {"updated_opportunities": change["changed"], "deleted": deleted}


# ============================================================ running the loaders


def run_loader(loader: str, stage: str, backend: Backend, url: str, sandbox: SandboxProcess,
               workdir: Path, label: str) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """One timed load (initial or incremental) and the ids it left in its tables."""
    if loader == "accrue":
        result = sync_bench.run_phase(backend, stage, url, sandbox, label)
        return result, {}
    log(f"== {backend.name}: dlt {stage} ({label}) ==")
    ids_path = workdir / f"dlt-ids-{backend.name}.json"
    spec = {"backend": backend.name, "destination_url": url, "sandbox_url": sandbox.url,
            "pipelines_dir": str(workdir / f"dlt-pipelines-{url.rsplit('/', 1)[-1]}"),
            "ids_path": str(ids_path), **sandbox.credentials}
    cpu_before = sandbox.cpu_seconds()
    result = run_child("benchmarks.loader_compare_dlt", spec, f"dlt {stage} on {backend.name}",
                       PHASE_TIMEOUT_SECONDS)
    result["sandbox_cpu_seconds"] = sandbox.cpu_seconds() - cpu_before
    result["records_per_second"] = rate(result["records"], result["wall_seconds"])
    log(f"   {result['records']:,} records in {result['wall_seconds']:.1f}s "
         f"({result['records_per_second']:,.0f}/s), peak RSS {result['peak_rss_mb']:.0f} MB")
    return result, json.loads(ids_path.read_text())


def _figures(result: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("records", "wall_seconds", "records_per_second", "peak_rss_mb",
            "sandbox_cpu_seconds")
    return {k: result.get(k) for k in keys}


def run_round(round_number: int, args: argparse.Namespace, cache: Path, workdir: Path,
              backends: list[dict[str, Backend]], hook: Hook | None) -> dict[str, Any]:
    """Every loader on every backend, initial load then incremental, on a fresh org copy.

    `backends`: per backend kind, each loader's maker of scratch databases.
    """
    label = f"round {round_number + 1}/{args.repeat}"
    state = workdir / f"sandbox-{round_number}.db"
    shutil.copyfile(cache, state)
    order = args.loaders if round_number % 2 == 0 else args.loaders[::-1]
    sandbox = SandboxProcess.start(state)
    made: list[tuple[Backend, str]] = []
    out: dict[str, Any] = {"order": list(order), "loaders": {}, "ceilings": {}}
    try:
        truth = source_truth(sandbox)
        urls: dict[tuple[str, str], str] = {}
        for stage in STAGES:
            if stage == "incremental":
                out["change"] = change_source(sandbox, args.seed, round_number)
                truth = source_truth(sandbox)
            for makers in backends:
                for loader in order:
                    backend = makers[loader]
                    key = (loader, backend.name)
                    if key not in urls:
                        urls[key] = backend.create(round_number)
                        made.append((backend, urls[key]))
                    result, ids = run_loader(loader, stage, backend, urls[key], sandbox,
                                             workdir, label)
                    if hook is not None:
                        hook(stage, loader, backend.name, urls[key])
                    if loader == "accrue":
                        ids = accrue_ids(urls[key])
                        if stage == "initial" and args.ceilings:
                            raw = sync_bench.run_phase(backend, "raw", urls[key], sandbox,
                                                       label)
                            out["ceilings"][f"write {backend.name}"] = raw["records"] / raw[
                                "wall_seconds"]
                    entry = out["loaders"].setdefault(loader, {}).setdefault(backend.name, {})
                    entry[stage] = {**_figures(result), "checks": row_checks(truth, ids)}
        if args.ceilings:
            fetch = sync_bench.run_phase(None, "fetch", "", sandbox, label)
            out["ceilings"]["fetch"] = fetch["records"] / fetch["wall_seconds"]
    finally:
        sandbox.stop()
        for backend, url in made:
            backend.drop(url)
        state.unlink(missing_ok=True)
    return out


# ============================================================ summary and report


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of every figure over the rounds; a check's counts are the worst round's."""
    summary: dict[str, Any] = {}
    for loader, per_backend in rounds[0]["loaders"].items():
        for backend, stages in per_backend.items():
            for stage in stages:
                runs = [r["loaders"][loader][backend][stage] for r in rounds]
                figures = {k: median([run[k] for run in runs])
                           for k in runs[0] if k != "checks"}
                checks = {}
                for name in runs[0]["checks"]:
                    each = [run["checks"][name] for run in runs]
                    checks[name] = {k: max(c[k] for c in each) for k in each[0]
                                    if k not in ("examples", "exact")}
                    checks[name]["exact"] = all(c["exact"] for c in each)
                    checks[name]["examples"] = next(
                        (c["examples"] for c in each if c["examples"]), {})
                summary.setdefault(loader, {}).setdefault(backend, {})[stage] = {
                    **figures, "checks": checks}
    ceilings = {k: median([r["ceilings"].get(k) for r in rounds])
                for k in rounds[0]["ceilings"]}
    return {"loaders": summary, "ceilings": ceilings, "ratios": {
        backend: median([_round_ratio(r, backend) for r in rounds])
        for backend in summary["accrue"]}}


def _round_ratio(round_: Mapping[str, Any], backend: str) -> float | None:
    """Accrue's initial-load records/s ÷ the best other loader's, within one round (so the
    machine's noise mostly cancels before the median is taken)."""
    rates = {loader: per_backend[backend]["initial"]["records_per_second"]
             for loader, per_backend in round_["loaders"].items()}
    others = [rate for loader, rate in rates.items() if loader != "accrue"]
    return rates["accrue"] / max(others) if others and max(others) else None


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _exact(checks: Mapping[str, Mapping[str, Any]]) -> str:
    wrong = [name for name, c in checks.items() if not c["exact"]]
    return "yes" if not wrong else "NO: " + ", ".join(wrong)


def report(results: Mapping[str, Any]) -> str:
    summary = results["summary"]
    loaders = summary["loaders"]
    lines = [
        f"Loader comparison — {results['opportunities']:,} opportunities (seed "
        f"{results['seed']}), {results['repeat']} round(s), medians; load average "
        f"{results['load_average']}",
        f"versions: {results['versions']}",
        "",
    ]
    headers = ["backend / loader / stage", "records", "wall s", "records/s", "peak RSS MB",
               "exactly the source's rows"]
    rows = []
    for backend in results["backends"]:
        for loader in LOADERS:
            for stage in STAGES:
                f = loaders.get(loader, {}).get(backend, {}).get(stage)
                if f is None:
                    continue
                rows.append([f"{backend} {loader} {stage}", _n(f["records"]),
                             f"{f['wall_seconds']:.2f}", _n(f["records_per_second"]),
                             _n(f["peak_rss_mb"]), _exact(f["checks"])])
    lines.append(text_table(headers, rows))
    headers = ["backend", "accrue rec/s", "best other", "its rec/s", "accrue ÷ best",
               f"target ≥ {TARGET_RATIO:g}×", "fetch ceiling", "write ceiling"]
    rows = []
    ceilings = summary["ceilings"]
    for backend in results["backends"]:
        ours = loaders["accrue"][backend]["initial"]["records_per_second"]
        others = [(loaders[o][backend]["initial"]["records_per_second"], o)
                  for o in loaders if o != "accrue" and backend in loaders[o]]
        best, name = max(others) if others else (None, "-")
        ratio = summary["ratios"].get(backend)
        rows.append([backend, _n(ours), name, _n(best),
                     "-" if ratio is None else f"{ratio:.2f}",
                     "-" if ratio is None else ("met" if ratio >= TARGET_RATIO else "not met"),
                     _n(ceilings.get("fetch")), _n(ceilings.get(f"write {backend}"))])
    lines += ["", "initial load, records/s (records ÷ wall s); accrue ÷ best: the median of "
              "each round's ratio", text_table(headers, rows)]
    lines += ["", "row checks (worst round) where a load differs from the source:"]
    found = False
    for loader, per_backend in loaders.items():
        for backend, stages in per_backend.items():
            for stage, figures in stages.items():
                for name, c in figures["checks"].items():
                    if c["exact"]:
                        continue
                    found = True
                    lines.append(
                        f"  {loader} {backend} {stage} {name}: {c['rows']:,} rows, source "
                        f"{c['source']:,}; missing {c['missing']:,}, duplicate rows "
                        f"{c['duplicate_rows']:,}, deleted present {c['deleted_present']:,}, "
                        f"unknown {c['unknown']:,}; e.g. {c['examples']}")
    if not found:
        lines.append("  none: every loader has exactly the source's rows")
    return "\n".join(lines)


# ============================================================ entry point


def run(args: argparse.Namespace, hook: Hook | None = None) -> dict[str, Any]:
    """Seed (or reuse) the org and run every round; `hook` may plant errors (the tests)."""
    cache, seeding = sync_bench.ensure_seeded(args.opportunities, args.seed, args.activities)
    server: ScratchPostgres | None = None
    with work_dir("accrue-loaders-") as workdir:
        try:
            backends: list[dict[str, Backend]] = []
            if "sqlite" in args.backends:  # a folder per loader: the files are named by round
                backends.append({loader: sqlite_backend(workdir / loader)
                                 for loader in args.loaders})
                for loader in args.loaders:
                    (workdir / loader).mkdir()
            if "postgresql" in args.backends:
                backend, server, message = postgres_backend(args.postgres_url)
                log(message)
                if backend is None:
                    raise BenchError(message)
                backends.append(dict.fromkeys(args.loaders, backend))
            rounds = [run_round(r, args, cache, workdir, backends, hook)
                      for r in range(args.repeat)]
        finally:
            if server is not None:
                server.drop_all()
    from importlib.metadata import version

    return {
        "opportunities": args.opportunities, "seed": args.seed, "repeat": args.repeat,
        "backends": args.backends, "sandbox": seeding.get("counts"),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "loaders": args.loaders,
        "versions": ", ".join(f"{p} {version(p)}" for p in (
            *(name for name in args.loaders if name != "accrue"), "simple-salesforce")),
        "summary": summarize(rounds), "rounds": rounds,
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loader_compare",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--opportunities", type=int, default=DEFAULT_OPPORTUNITIES)
    parser.add_argument("--seed", type=int, default=sync_bench.DEFAULT_SEED)
    parser.add_argument("--activities", action="store_true",
                        help="seed Tasks and Events too (both loaders then read them)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; figures are medians")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--loaders", default=",".join(LOADERS),
                        help="comma-separated, of %(default)s")
    parser.add_argument("--postgres-url", default=default_postgres_url(BENCH_POSTGRES_ENV))
    parser.add_argument("--no-ceilings", dest="ceilings", action="store_false",
                        help="skip the fetch and write ceilings")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.opportunities < 1 or args.repeat < 1:
        parser.error("--opportunities and --repeat must be at least 1")
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not args.backends or set(args.backends) - {"sqlite", "postgresql"}:
        parser.error("--backends: sqlite and/or postgresql")
    args.loaders = [name.strip() for name in args.loaders.split(",") if name.strip()]
    if "accrue" not in args.loaders or set(args.loaders) - set(LOADERS):
        parser.error(f"--loaders: accrue and any of {', '.join(LOADERS[1:])}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    return finish_benchmark(lambda: run(args), report, args.output, "loaders.json")


if __name__ == "__main__":
    sys.exit(main())
