"""`make chaos`, import mode: `accrue import` SIGKILLed at random, then the warehouse
compared with the exported file, record by record.

Why: the file import promises what the connectors promise (nothing lost, nothing applied
twice, absent records of a full export flagged deleted, each version logged once) while
it writes a file in pages that each commit with the import's progress. One trial, per
warehouse backend:

1. the tenant's "CRM" (a dict of a few thousand deals, kept across trials) changes: rows
   edited and added, and in a snapshot trial some removed; the export is written as a CSV
   with realistic quirks (quoted newlines and commas, decimal amounts);
2. `accrue import TENANT FILE --object opportunity [--snapshot] --yes` runs as a child
   process and is SIGKILLed at a random moment, several times; then it runs until it
   completes;
3. every record the CRM ever had is compared with the warehouse: values and whole text
   row, live or deleted, no duplicate ids, and each version in the change log once (an
   unchanged row of a re-imported export adds no version, a killed page none twice).

`python -m benchmarks.chaos_import --help`; `make chaos` runs it after the push path.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from accrue import tenants
from accrue.db import make_engine, upgrade
from accrue.schema import crm_change_log
from accrue.warehouse import Warehouse
from benchmarks.chaos_cli import (
    SCRATCH_PREFIX,
    add_common_arguments,
    check_backends,
    print_mismatches,
    verdict,
)
from benchmarks.chaos_compare import Comparison, check_duplicates, differences, rows_of
from benchmarks.chaos_process import ChaosError
from benchmarks.support.databases import scratch_warehouses
from benchmarks.support.processes import LoggedChild

OBJECT = "opportunity"
HEADERS = ["Opportunity ID", "Opportunity Name", "Amount", "Stage", "Close Date",
           "Description"]
STAGES = ("Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won",
          "Closed Lost")


@dataclass
class Record:
    """One deal of the CRM as its export shows it, and how many versions it has had."""

    row: dict[str, str]
    deleted: bool = False
    versions: int = 1


class Crm:
    """The tenant's CRM: the deals, their edits, and the export of a trial."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.records: dict[str, Record] = {}
        self.next_id = 0
        self.import_seconds = 3.0  # how long the last import took, to kill within it

    def _row(self, source_id: str) -> dict[str, str]:
        rng, n = self.rng, self.next_id
        cents = rng.randrange(100, 50_000_000)
        note = rng.choice(["", "", "Call back\nafter the demo", 'Said "maybe", then yes',
                           "Budget: 10,000; renewal in Q3"])
        return {"Opportunity ID": source_id,
                "Opportunity Name": rng.choice([f"Deal {n}", f"Acme, Inc. - {n}"]),
                "Amount": f"{cents // 100}.{cents % 100:02d}",
                "Stage": rng.choice(STAGES),
                "Close Date": date(2025, rng.randrange(1, 13), rng.randrange(1, 29)).isoformat(),
                "Description": note}

    def add(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            source_id = f"006C{self.next_id:014d}"
            self.records[source_id] = Record(self._row(source_id))
            self.next_id += 1
            ids.append(source_id)
        return ids

    def live(self) -> list[str]:
        return [i for i, r in self.records.items() if not r.deleted]

    def edit(self, count: int) -> list[str]:
        ids = self.rng.sample(self.live(), min(count, len(self.live())))
        for source_id in ids:
            record = self.records[source_id]
            column = self.rng.choice(HEADERS[1:])
            value = record.row[column]
            while value == record.row[column]:  # a valid value of the column, a new one
                value = self._row(source_id)[column]
            record.row = {**record.row, column: value}
            record.versions += 1
        return ids

    def remove(self, count: int) -> None:
        for source_id in self.rng.sample(self.live(), min(count, len(self.live()))):
            self.records[source_id].deleted = True
            self.records[source_id].versions += 1

    def export(self, path: Path, ids: list[str]) -> None:
        with path.open("w", newline="", encoding="utf-8") as out:
            writer = csv.DictWriter(out, HEADERS, quoting=csv.QUOTE_MINIMAL)
            writer.writeheader()
            for source_id in ids:
                writer.writerow(self.records[source_id].row)


def expected_fields(row: dict[str, str]) -> dict[str, Any]:
    """The common-model values an exact import of the row holds."""
    return {"name": row["Opportunity Name"], "amount": float(Decimal(row["Amount"])),
            "stage": row["Stage"], "close_date": date.fromisoformat(row["Close Date"])}


def version_counts(engine: sa.Engine, tenant: str) -> dict[str, int]:
    log = crm_change_log
    with engine.connect() as conn:
        return {row.source_id: row.n for row in conn.execute(
            sa.select(log.c.source_id, sa.func.count().label("n"))
            .where(log.c.tenant_id == tenant, log.c.object_name == OBJECT)
            .group_by(log.c.source_id))}


def compare_with_crm(warehouse: Warehouse, tenant: str, crm: Crm) -> Comparison:
    """Every deal the CRM ever had against the warehouse, exactly, and its history."""
    comparison = Comparison()
    ours = rows_of(warehouse, tenant, OBJECT)
    logged = version_counts(warehouse.engine, tenant)
    check_duplicates(warehouse, tenant, OBJECT, comparison)
    for source_id, record in crm.records.items():
        comparison.rows += 1
        row = ours.get(source_id)
        if row is None:
            comparison.add("missing", OBJECT, source_id, "in the CRM, not in the warehouse")
            continue
        if bool(row["is_deleted"]) != record.deleted:
            comparison.add("deleted_flag", OBJECT, source_id,
                           f"warehouse is_deleted={row['is_deleted']}, CRM "
                           f"deleted={record.deleted}")
        elif not record.deleted:
            wanted = expected_fields(record.row)
            differing = "; ".join(filter(None, [
                differences(row, wanted, sorted(wanted)),
                differences(row["raw"] or {}, record.row, HEADERS)]))
            if differing:
                comparison.add("fields", OBJECT, source_id, differing)
        if logged.get(source_id, 0) != record.versions:
            comparison.add("history", OBJECT, source_id,
                           f"{logged.get(source_id, 0)} versions logged, the CRM had "
                           f"{record.versions}")
    for source_id in ours.keys() - crm.records.keys():
        comparison.rows += 1
        comparison.add("extra", OBJECT, source_id, "never in the CRM")
    comparison.quarantined = warehouse.quarantine_count(tenant)
    return comparison


# ============================================================ the SIGKILL run


@dataclass
class ImportTrial:
    backend: str
    trial: int
    mode: str
    file_rows: int = 0
    kills: int = 0
    runs: int = 0
    resumed: int = 0
    rows: int = 0
    mismatches: list[str] = field(default_factory=list)
    quarantined: int = 0
    seconds: float = 0.0


def prepare(warehouse_url: str, tenant: str) -> None:
    engine = make_engine(warehouse_url)
    try:
        upgrade(engine)
        if tenants.get_tenant(engine, tenant) is None:
            tenants.add_tenant(engine, tenant, "Chaos import", "salesforce")
    finally:
        engine.dispose()


def _alive_at_kill_moment(child: subprocess.Popen[bytes], log: Path, rng: random.Random,
                          estimate: float) -> bool:
    """Wait for a kill moment; False if the child finished first. Half the moments are
    anywhere in the run's expected length (start-up, reading, a page's write), half just
    after a page committed (its progress line), inside the next page's write."""
    if rng.random() < 0.5:
        try:
            child.wait(timeout=rng.uniform(0.2, 1.0) * estimate)
            return False
        except subprocess.TimeoutExpired:
            return True
    with log.open("rb") as lines:
        lines.seek(0, os.SEEK_END)
        seen = b""
        while child.poll() is None and b": imported " not in seen:
            time.sleep(0.01)
            seen = seen[-64:] + lines.read()
    try:
        child.wait(timeout=rng.uniform(0.0, 0.6))
        return False
    except subprocess.TimeoutExpired:
        return True


def import_until_done(warehouse_url: str, tenant: str, path: Path, snapshot: bool,
                      kills: int, rng: random.Random, log: Path, estimate: float,
                      ) -> tuple[int, int, int, float]:
    """`accrue import` SIGKILLed up to `kills` times at a random moment of its expected
    length `estimate` (a run that finished first is not killed), then run to completion;
    returns (kills, runs, runs that resumed a killed one's pages, the seconds of the last
    run that finished)."""
    args = [sys.executable, "-m", "accrue_cli", "import", tenant, str(path), "--object",
            OBJECT, "--yes", *(["--snapshot"] if snapshot else [])]
    # Unbuffered: a page's progress line reaches the log as it commits (a kill moment).
    env = {**os.environ, "ACCRUE_DATABASE_URL": warehouse_url, "PYTHONUNBUFFERED": "1"}
    killed = runs = resumed = 0
    child = LoggedChild("accrue import", args, env, log)
    log.touch()
    for attempt in range(kills + 1):
        runs += 1
        began, offset = time.monotonic(), log.stat().st_size
        child.start()
        assert child.process is not None
        if attempt < kills and _alive_at_kill_moment(child.process, log, rng, estimate):
            child.kill()
            killed += 1
            resumed += _resumed(log, offset)
            continue
        code = child.process.wait(timeout=600)
        estimate = time.monotonic() - began
        if code != 0:
            raise ChaosError(f"accrue import exited {code}; its log ends:\n"
                             f"{child.log_tail(1500)}")
        resumed += _resumed(log, offset)
    return killed, runs, resumed, estimate


def _resumed(log: Path, offset: int) -> int:
    """1 if the run whose output starts at `offset` resumed after a committed page."""
    with log.open("rb") as out:
        out.seek(offset)
        return int(b"(resumed after line " in out.read())


def run_trial(backend: str, warehouse_url: str, workdir: Path, crm: Crm, trial: int,
              options: argparse.Namespace) -> ImportTrial:
    began = time.monotonic()
    rng = random.Random(f"{options.seed}/{backend}/{trial}")
    tenant = f"chaos-import-{backend}"
    snapshot = trial % 2 == 1  # full exports and changes-only ones, in turn
    result = ImportTrial(backend, trial, "snapshot" if snapshot else "changes")
    if trial == 1:
        ids = crm.add(options.opportunities)
    else:
        if snapshot:  # before the edits: an edit no export showed is no version
            crm.remove(options.opportunities // 20)
        edited = crm.edit(options.opportunities // 10)
        added = crm.add(options.opportunities // 20)
        changed = set(edited) | set(added)
        ids = crm.live() if snapshot else [i for i in crm.records if i in changed]
    path = workdir / f"export-{backend}-{trial}.csv"
    crm.export(path, ids)
    result.file_rows = len(ids)
    result.kills, result.runs, result.resumed, crm.import_seconds = import_until_done(
        warehouse_url, tenant, path, snapshot, options.kills, rng,
        workdir / f"import-{backend}.log", crm.import_seconds)
    engine = make_engine(warehouse_url)
    try:
        comparison = compare_with_crm(Warehouse(engine), tenant, crm)
    finally:
        engine.dispose()
    result.rows = comparison.rows
    result.mismatches = [str(m) for m in comparison.mismatches]
    result.quarantined = comparison.quarantined
    result.seconds = time.monotonic() - began
    return result


HEADER_LINE = (f"{'backend':<11}{'trial':>6}{'mode':>10}{'file rows':>10}{'kills':>6}"
               f"{'runs':>5}{'resumed':>8}{'compared':>9}{'mismatches':>11}{'quar.':>6}{'s':>5}")


def line(r: ImportTrial) -> str:
    return (f"{r.backend:<11}{r.trial:>6}{r.mode:>10}{r.file_rows:>10}{r.kills:>6}{r.runs:>5}"
            f"{r.resumed:>8}{r.rows:>9}{len(r.mismatches):>11}{r.quarantined:>6}{r.seconds:>5.0f}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos_import",
        description="`accrue import` SIGKILLed at random while it writes a CSV export; then "
        "the warehouse must equal the CRM the exports came from.")
    add_common_arguments(parser)
    parser.add_argument("--opportunities", type=int, default=5000,
                        help="deals in the first export (default %(default)s)")
    parser.add_argument("--kills", type=int, default=3,
                        help="SIGKILLs tried per trial before the run to completion "
                        "(default %(default)s)")
    args = parser.parse_args(argv)
    if args.trials < 1 or args.opportunities < 20 or args.kills < 0:
        parser.error("--trials >= 1, --opportunities >= 20 and --kills >= 0")
    check_backends(parser, args)
    return args


def run(args: argparse.Namespace) -> list[ImportTrial]:
    """Every trial on every backend reachable; ChaosError on a harness problem."""
    results: list[ImportTrial] = []
    with scratch_warehouses(args.backends, args.postgres_url, SCRATCH_PREFIX,
                            args.keep) as (workdir, urls):
        print(f"chaos import: {args.trials} trial(s) x {len(urls)} backend(s), "
              f"{args.opportunities} deals, up to {args.kills} SIGKILLs of `accrue import` "
              f"per trial, seed {args.seed}", flush=True)
        print(HEADER_LINE, flush=True)
        for backend, url in urls.items():
            prepare(url, f"chaos-import-{backend}")
            crm = Crm(random.Random(f"{args.seed}/{backend}"))
            for trial in range(1, args.trials + 1):
                result = run_trial(backend, url, workdir, crm, trial, args)
                results.append(result)
                print(line(result), flush=True)
                print_mismatches(result.mismatches, args.verbose)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    began = time.monotonic()
    try:
        results = run(args)
    except ChaosError as exc:
        print(f"chaos import failed (a harness problem, not a finding): {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return verdict(sum(len(r.mismatches) for r in results), len(results), began,
                   f"{sum(r.kills for r in results)} SIGKILLs",
                   f"{sum(r.resumed for r in results)} resumed runs",
                   f"{sum(r.rows for r in results):,} records compared")


if __name__ == "__main__":
    sys.exit(main())
