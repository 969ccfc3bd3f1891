"""File import throughput and memory: N generated export rows into a fresh warehouse.

Writes a Salesforce-report-like CSV (UTF-8 BOM, "USD 1,234.56" amounts, M/D/YYYY dates,
a quoted multi-line description on every tenth row) of `--rows` rows (default 100,000;
`--rows 1000000` for the issue's figure), then in a child process proposes the mapping
(the whole-file type check) and imports it as a snapshot (or `--changes-only`), and
prints rows/s of each phase and the child's peak RSS (VmHWM), the import's alone.

    python -m benchmarks.file_import_bench [--rows N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import codecs
import json
import multiprocessing
import random
import tempfile
import time
from pathlib import Path

from benchmarks.support.measure import peak_rss_mb

HEADER = ('"Opportunity ID","Opportunity Name","Account ID","Amount","Stage","Close Date",'
          '"Probability (%)","Created Date","Description"\r\n')
STAGES = ("Prospecting", "Qualification", "Proposal/Price Quote", "Closed Won", "Closed Lost")


def write_export(path: Path, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    with open(path, "wb") as raw:
        raw.write(codecs.BOM_UTF8)
        out = codecs.getwriter("utf-8")(raw)
        out.write(HEADER)
        for i in range(rows):
            cents = rng.randrange(100, 50_000_000)
            month, day = rng.randrange(1, 13), rng.randrange(1, 29)
            note = "Call back\r\nafter the demo" if i % 10 == 0 else ""
            out.write(f'"006B{i:014d}","Deal {i}","001B{i % 5000:014d}",'
                      f'"USD {cents // 100:,}.{cents % 100:02d}","{rng.choice(STAGES)}",'
                      f'"{month}/{day}/2025","{rng.randrange(0, 101)}%",'
                      f'"{month}/{day}/2024","{note}"\r\n')


def _child(database_url: str, path: str, snapshot: bool, queue: multiprocessing.Queue) -> None:
    from accrue import db, tenants
    from accrue.file_import import import_file, propose
    from accrue.warehouse import Warehouse

    engine = db.make_engine(database_url)
    db.upgrade(engine)
    if tenants.get_tenant(engine, "bench-import") is None:
        tenants.add_tenant(engine, "bench-import", "File import bench", "salesforce")
    warehouse = Warehouse(engine)
    began = time.perf_counter()
    proposal = propose(warehouse, "bench-import", "opportunity", path)
    proposed = time.perf_counter() - began
    assert proposal.mapping is not None
    began = time.perf_counter()
    result = import_file(engine, "bench-import", "opportunity", path, proposal.mapping,
                         snapshot=snapshot)
    imported = time.perf_counter() - began
    queue.put({"rows": result.rows, "upserted": result.upserted,
               "quarantined": result.quarantined, "propose_seconds": proposed,
               "import_seconds": imported, "peak_rss_mb": peak_rss_mb()})
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--changes-only", action="store_true",
                        help="import as changes only (a snapshot also holds every id once, "
                        "at the end, for the warehouse's LiveIds)")
    parser.add_argument("--database-url", default=None,
                        help="a warehouse to import into (default: a scratch SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "opportunities.csv"
        write_export(path, args.rows)
        url = args.database_url or f"sqlite:///{Path(scratch) / 'warehouse.db'}"
        queue: multiprocessing.Queue = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(
            target=_child, args=(url, str(path), not args.changes_only, queue))
        child.start()
        figures = queue.get()
        child.join()
        size_mb = path.stat().st_size / 1e6
    rows = figures["rows"]
    print(f"file import: {rows:,} rows ({size_mb:,.0f} MB)")
    print(f"  propose (detect, match, type-check): {figures['propose_seconds']:.1f} s "
          f"[{rows / figures['propose_seconds']:,.0f} rows/s]")
    mode = "changes only" if args.changes_only else "snapshot"
    label = f"import ({mode}):"
    print(f"  {label:<37}{figures['import_seconds']:.1f} s "
          f"[{rows / figures['import_seconds']:,.0f} rows/s], "
          f"{figures['upserted']:,} upserted, {figures['quarantined']:,} quarantined")
    print(f"  peak RSS: {figures['peak_rss_mb']:,.0f} MB")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
