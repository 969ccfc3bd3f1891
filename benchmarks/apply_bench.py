"""`Warehouse.apply` alone, on the pages a real initial load gives it.

Why it exists: the sync bench times a whole sync (HTTP, mapping, writing); the write
path's own speed was hidden in it (issue 15: 4-9 % of the driver's bulk path). Here
the pages are read once from the seeded Salesforce sandbox (the connector's own read
path), kept in a pickle next to the org cache, and replayed into fresh warehouses, so
only `apply` is timed.

How it measures: for each backend and each round, a fresh database, then every page
of every object through `apply` with its checkpoint state, as the sync engine does.
`--baseline REV` also replays the same pages through the write path as it was
at git revision REV, in the same rounds (alternating), so before/after ratios come
from one run on a shared, noisy machine. Figures are medians over `--repeat` rounds.
Bytes per record: the SQLite file after a VACUUM, PostgreSQL's
pg_total_relation_size of the crm_* tables and the change log; both over the records'
JSON size (`json.dumps` of `raw`, compact).

Run `python -m benchmarks.apply_bench --help`.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from accrue.db import make_engine, upgrade
from accrue.schema import OBJECT_TABLES, crm_change_log
from accrue.warehouse import Warehouse
from benchmarks.support.databases import DEFAULT_POSTGRES_URL, postgres_backend, sqlite_backend
from benchmarks.support.processes import REPO_ROOT
from benchmarks.sync_bench import DEFAULT_SEED, SandboxProcess, _cache_path, ensure_seeded
from benchmarks.sync_ceilings import TENANT, HttpClock
from benchmarks.sync_ceilings import connector as make_connector
from connectors.base import Checkpoint, LiveIds
from connectors.common_model import COMMON_OBJECTS

Page = tuple[str, list[Any], dict[str, Any] | None]  # object, changes, checkpoint state


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def capture_pages(opportunities: int, seed: int) -> list[Page]:
    """Every page an initial load of the seeded org hands to `apply` (cached as a pickle)."""
    cache = _cache_path(opportunities, seed).with_suffix(".pages.pickle")
    if cache.exists():
        with cache.open("rb") as handle:
            pages: list[Page] = pickle.load(handle)
        return pages
    org, _ = ensure_seeded(opportunities, seed)
    pages = []
    with tempfile.TemporaryDirectory(prefix="accrue-apply-bench-") as workdir:
        state = Path(workdir) / "sandbox.db"
        shutil.copyfile(org, state)
        sandbox = SandboxProcess.start(state)
        try:
            spec = {"sandbox_url": sandbox.url, **sandbox.credentials}
            source = make_connector(spec, HttpClock())
            try:
                for name in COMMON_OBJECTS:
                    changes: list[Any] = []
                    for change in source.read(name, None):
                        if isinstance(change, Checkpoint):
                            pages.append((name, changes, dict(change.state)))
                            changes = []
                        elif not isinstance(change, LiveIds):
                            changes.append(change)
                    if changes:
                        pages.append((name, changes, None))
            finally:
                source.close()
        finally:
            sandbox.stop()
    partial = cache.with_name(cache.name + ".partial")
    with partial.open("wb") as handle:
        pickle.dump(pages, handle)
    partial.replace(cache)
    return pages


def baseline_warehouse(revision: str) -> type[Warehouse]:
    """`Warehouse` as the write path was at `revision`: the `accrue/warehouse/` package, or
    before it `accrue/warehouse.py` with `bulk_write.py` and `shared_history.py`.

    Its files are written under a private package name (their imports of each other
    rewritten to it), so the baseline runs its own helpers, not today's.
    """
    listed = subprocess.run(
        ["git", "ls-tree", "--name-only", revision, "accrue/warehouse/", "accrue/warehouse.py",
         "accrue/bulk_write.py", "accrue/shared_history.py"],
        cwd=REPO_ROOT, check=True, capture_output=True, text=True,
    ).stdout.split()
    paths = [path for path in listed if path.endswith(".py")]
    modules = [path.removeprefix("accrue/").removesuffix(".py").replace("/", ".")
               for path in paths]
    package = f"_baseline_{revision.replace('/', '_').replace('-', '_').replace('.', '_')}"
    root = Path(tempfile.mkdtemp(prefix="accrue-apply-bench-baseline-"))
    atexit.register(shutil.rmtree, root, True)
    (root / package).mkdir()
    (root / package / "__init__.py").write_text("")
    for path, module in zip(paths, modules, strict=True):
        source = subprocess.run(["git", "show", f"{revision}:{path}"], cwd=REPO_ROOT,
                                check=True, capture_output=True, text=True).stdout
        for name in sorted({m.split(".")[0] for m in modules}):
            source = source.replace(f"from accrue.{name}", f"from {package}.{name}")
        target = root / package / (module.replace(".", "/") + ".py")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)
    sys.path.insert(0, str(root))
    baseline: type[Warehouse] = importlib.import_module(f"{package}.warehouse").Warehouse
    return baseline


def replay(warehouse: Warehouse, pages: list[Page]) -> tuple[int, float, float]:
    """Records applied, and the wall and CPU seconds (this process) `apply` took.

    The CPU time moves less than the wall time on a shared machine: on SQLite it is
    all of the work; on PostgreSQL the server's share is left out.
    """
    records = 0
    seconds = cpu = 0.0
    for object_name, changes, state in pages:
        started, started_cpu = time.perf_counter(), time.process_time()
        warehouse.apply(TENANT, object_name, changes, state)
        seconds += time.perf_counter() - started
        cpu += time.process_time() - started_cpu
        records += len(changes)
    return records, seconds, cpu


def stored_bytes(engine: sa.Engine) -> int:
    """What the warehouse's record tables and change log take on disk."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("VACUUM")
        return Path(engine.url.database or "").stat().st_size
    names = [t.name for t in OBJECT_TABLES.values()] + [crm_change_log.name]
    with engine.connect() as conn:
        return int(sum(
            conn.execute(sa.text("SELECT pg_total_relation_size(CAST(:t AS regclass))"),
                         {"t": name}).scalar_one()
            for name in names
        ))


def json_bytes(pages: list[Page]) -> int:
    return sum(
        len(json.dumps(change.raw, separators=(",", ":"), default=str))
        for _, changes, _ in pages for change in changes if getattr(change, "raw", None)
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    pages = capture_pages(args.opportunities, args.seed)
    records = sum(len(changes) for _, changes, _ in pages)
    raw_bytes = json_bytes(pages)
    _log(f"{len(pages)} pages, {records:,} records, {raw_bytes / 1e6:.1f} MB of record JSON")
    variants: dict[str, Callable[[sa.Engine], Warehouse]] = {"current": Warehouse}
    if args.baseline:
        variants = {f"baseline ({args.baseline})": baseline_warehouse(args.baseline), **variants}
    results: dict[str, Any] = {"records": records, "json_bytes": raw_bytes, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="accrue-apply-bench-") as workdir:
        backends = []
        if "sqlite" in args.backends:
            backends.append(sqlite_backend(Path(workdir)))
        server = None
        if "postgresql" in args.backends:
            backend, server, note = postgres_backend(args.postgres_url)
            _log(note)
            if backend is not None:
                backends.append(backend)
        try:
            number = 0
            for backend in backends:
                figures: dict[str, dict[str, list[float]]] = {
                    name: {"rate": [], "cpu_rate": [], "bytes_per_record": []}
                    for name in variants
                }
                for round_number in range(args.repeat):
                    for name, make in variants.items():
                        number += 1
                        url = backend.create(number)
                        engine = make_engine(url)
                        try:
                            upgrade(engine)
                            applied, seconds, cpu = replay(make(engine), pages)
                            size = stored_bytes(engine)
                        finally:
                            engine.dispose()
                            backend.drop(url)
                        figures[name]["rate"].append(applied / seconds)
                        figures[name]["cpu_rate"].append(applied / cpu)
                        figures[name]["bytes_per_record"].append(size / raw_bytes)
                        _log(f"[{backend.name} round {round_number + 1}] {name}: "
                             f"{applied / seconds:,.0f} records/s "
                             f"({applied / cpu:,.0f} per CPU second), {size / 1e6:.1f} MB "
                             f"({size / raw_bytes:.2f}x the JSON)")
                results["backends"][backend.name] = {
                    name: {key: statistics.median(values) for key, values in f.items()}
                    for name, f in figures.items()
                }
        finally:
            if server is not None:
                server.drop_all()
    return results


def report(results: Mapping[str, Any]) -> str:
    lines = [f"{results['records']:,} records, {results['json_bytes'] / 1e6:.1f} MB of JSON",
             "| backend | variant | records/s (median) | records per CPU s | storage / JSON |",
             "|---|---|---:|---:|---:|"]
    for backend, variants in results["backends"].items():
        for name, figures in variants.items():
            lines.append(f"| {backend} | {name} | {figures['rate']:,.0f} | "
                         f"{figures['cpu_rate']:,.0f} | "
                         f"{figures['bytes_per_record']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.apply_bench",
                                     description="Warehouse.apply alone on a real load's pages.")
    parser.add_argument("--opportunities", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; figures are medians")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--baseline", default=None,
                        help="git revision whose warehouse.py to time in the same rounds")
    parser.add_argument("--profile", type=Path, default=None,
                        help="cProfile one SQLite replay of the current code into this file")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if args.profile:
        import cProfile

        pages = capture_pages(args.opportunities, args.seed)
        with tempfile.TemporaryDirectory() as workdir:
            engine = make_engine(f"sqlite:///{workdir}/w.db")
            upgrade(engine)
            cProfile.runctx("replay(Warehouse(engine), pages)", globals(), locals(),
                            str(args.profile))
        return
    print(report(run(args)))


if __name__ == "__main__":
    main()
