"""`make chaos`: every registered CRM synced under faults, concurrent writes and SIGKILL,
then compared exactly with its org.

Why it exists: F2 (never a duplicate), F3 (changes to historical records
applied, earlier versions kept), F4 (a sync failing anywhere is completed by
the next attempt from its last committed checkpoint) and "deletes flagged,
never kept as live" are promises about what happens when things go wrong at
the same time, for every CRM we connect. Unit tests cover each failure alone;
this run mixes them at random and checks the end result against the source.

Nothing here names a CRM: the registry lists them, each CRM's sandbox harness
(`connectors/sandbox_kit/harness.py`) starts its org, gives the connection a tenant
would store, takes the kit's fault switches and writes through the CRM's real
client. One trial, per CRM and warehouse backend (SQLite, PostgreSQL):

1. a random mix of the kit's fault switches is set with `org.set_faults`:
   500/503s, 429s, the daily quota refused after N calls, sessions expiring
   after N calls, latency (sometimes past the worker's request timeout),
   connections cut mid-body, late commits (0.5–5 minutes in the past, inside
   the adapters' lookback);
2. a mutator thread writes through `org.writer()` (`benchmarks.chaos_mutator`), or
   through the CRM's richer mutator where `benchmarks.chaos_<key>` defines one;
3. meanwhile `benchmarks.chaos_worker` syncs every object the adapter offers in
   a loop and is killed with SIGKILL at random moments, then restarted;
4. the mutator stops, faults are cleared and one clean sync of every object runs
   in this process;
5. the warehouse is compared (`benchmarks.chaos_compare`) with a fresh full read
   of the org and with the org's live counts, field by field; every version the
   worker journaled after a commit must be in `crm_change_log`.

Each CRM's warehouse tenant lives across trials (the first trial is the initial
load, under chaos); each CRM's org is shared by its backends. A trial's seed fixes
its fault switches, its mutation plan and its kill schedule; thread timing does
not replay. `python -m benchmarks.chaos --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import importlib.util
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import sqlalchemy as sa

from accrue.db import make_engine, upgrade
from accrue.tenants import add_tenant, get_tenant
from accrue.warehouse import Warehouse
from benchmarks import chaos_mutator
from benchmarks.chaos_cli import SCRATCH_PREFIX, add_common_arguments, check_backends, verdict
from benchmarks.chaos_compare import (
    Comparison,
    check_journal,
    compare_with_truth,
    read_truth,
    sync_every_object,
)
from benchmarks.chaos_process import (
    FAILURE_KINDS,
    ChaosError,
    EventReader,
    ForkServer,
    TailReader,
    Target,
    injected_faults,
    plan_faults,
    retry_causes,
    run_worker_with_kills,
)
from benchmarks.chaos_report import HEADER, TrialResult, print_trial, summary
from benchmarks.chaos_worker import Connection, Journal, make_connector, read_journal
from benchmarks.support.databases import scratch_warehouses
from benchmarks.support.measure import log
from benchmarks.support.processes import interrupt_on_sigterm
from connectors import registry
from connectors.sandbox_kit.harness import RunningCrmSandbox, SandboxHarness
from connectors.spec import load

DEFAULT_TRIALS = 17
DEFAULT_SEED = 1
DEFAULT_OPPORTUNITIES = 300
DEFAULT_TRIAL_SECONDS = 5.0
PAGE_SIZE = 50  # the org's query page: many pages, so many checkpoints to die between
TRUTH_TENANT = "chaos-truth"
# A trial that takes this much longer than its chaos phase is hung (a sandbox deadlock holds
# the GIL, so no Python timeout can fire): the C-level watchdog prints every thread's stack
# and ends the process, so a run fails loudly instead of hanging `make chaos` or the suite.
WATCHDOG_SECONDS = 600.0
MUTATOR_STOP_SECONDS = 120.0  # one write's client retries, each sleep capped (chaos_mutator)
MutatorFactory = Callable[..., chaos_mutator.MutatorBase]


def sandboxed_crms() -> list[str]:
    """Every registered CRM whose spec names a sandbox harness."""
    return [spec.key for spec in registry.specs() if spec.sandbox]


def crm_module(crm: str) -> Any | None:
    """`benchmarks.chaos_<key>`, where a CRM keeps richer chaos (its own mutator), or None."""
    name = f"benchmarks.chaos_{crm}"
    return importlib.import_module(name) if importlib.util.find_spec(name) else None


# ============================================================ one CRM's run


@dataclass
class ChaosOptions:
    trials: int = DEFAULT_TRIALS
    seed: int = DEFAULT_SEED
    opportunities: int = DEFAULT_OPPORTUNITIES
    trial_seconds: float = DEFAULT_TRIAL_SECONDS
    purge: bool = True
    verbose: bool = False


@dataclass
class Session:
    """One CRM's org, its connection and objects, and per-target state across trials."""

    crm: str
    org: RunningCrmSandbox
    connection: Connection
    objects: list[str]
    make_mutator: MutatorFactory
    truth: Warehouse
    # A CRM's richer truth (`compare_org` in `benchmarks.chaos_<key>`), run after the shared one.
    compare_org: Callable[..., None] | None = None
    memory: dict[str, Any] = field(default_factory=dict)  # a richer mutator's, across trials
    readers: dict[str, EventReader] = field(default_factory=dict)
    logs: dict[str, TailReader] = field(default_factory=dict)
    warehouses: dict[str, Warehouse] = field(default_factory=dict)
    journals: dict[str, Journal] = field(default_factory=dict)
    servers: dict[str, ForkServer] = field(default_factory=dict)


def trial_seed(base: int, trial: int) -> int:
    """Trial n of a run with --seed S uses S + n: `--seed <it> --trials 1` replays the plan."""
    return base + trial


def run_trial(session: Session, target: Target, trial: int, seed: int,
              options: ChaosOptions) -> TrialResult:
    began = time.monotonic()
    org = session.org
    plan = plan_faults(random.Random(f"{seed}:faults"), seed)
    org.set_faults({})
    mutator = session.make_mutator(org, session.connection, random.Random(f"{seed}:mutations"),
                                   session.memory, purge=options.purge)
    org.set_faults(plan.switches)
    mutator.start()
    try:
        kills = run_worker_with_kills(
            session.servers[target.backend], plan, random.Random(f"{seed}:kills"),
            options.trial_seconds, session.readers[target.backend],
        )
    finally:
        mutator.stop()
        injected = injected_faults(org)
        org.set_faults({})
        mutator.join(timeout=MUTATOR_STOP_SECONDS)
    if mutator.is_alive():  # a write could still land during the comparison
        raise ChaosError(f"the {session.crm} mutator did not stop within "
                         f"{MUTATOR_STOP_SECONDS:g} s")
    comparison = Comparison()
    warehouse = session.warehouses[target.backend]
    sync_every_object(warehouse, session.connection, target.tenant, session.objects, comparison)
    logged = check_journal(warehouse, target.tenant, read_journal(target.journal), comparison)
    read_truth(session.truth, session.connection, TRUTH_TENANT, session.objects, comparison)
    compare_with_truth(warehouse, target.tenant, session.truth, TRUTH_TENANT, org,
                       session.objects, logged, comparison)
    if session.compare_org is not None:
        session.compare_org(org, session.connection, warehouse, target.tenant, session.objects,
                            logged, comparison)
    return TrialResult(
        crm=session.crm, trial=trial, seed=seed, backend=target.backend,
        mutations=mutator.mutations,
        faults=None if injected is None else sum(injected.get(k, 0) for k in FAILURE_KINDS),
        kills=kills.kills, rows=comparison.rows, mismatches=comparison.mismatches,
        seconds=time.monotonic() - began, fault_kinds=injected or {},
        mutation_kinds=dict(mutator.done), uncertain_writes=sum(mutator.uncertain.values()),
        mutation_errors=dict(mutator.errors + mutator.rejected + mutator.gave_up),
        retries=dict(retry_causes(session.logs[target.backend])),
        syncs=dict(kills.syncs), worker_crashes=kills.crashes,
        quarantined=comparison.quarantined, plan=plan.describe(),
    )


def prepare_engine(url: str, tenant: str, crm: str) -> sa.Engine:
    """Migrate the warehouse and register the tenant (idempotent)."""
    engine = make_engine(url)
    upgrade(engine)
    if get_tenant(engine, tenant) is None:
        add_tenant(engine, tenant, f"Chaos run ({crm})", crm)
    return engine


def start_session(crm: str, targets: Sequence[Target], workdir: Path,
                  options: ChaosOptions) -> Session:
    """Start the CRM's org, write its connection file (0600) and a fork server per target."""
    spec = registry.spec(crm)
    harness: SandboxHarness = load(str(spec.sandbox))()
    org = harness.start(workdir / f"{crm}-org.db", opportunities=options.opportunities,
                        seed=options.seed, page_size=PAGE_SIZE)
    try:
        secrets, config = org.connection()
        connection = Connection(crm, secrets, config)
        connection_file = workdir / f"{crm}-connection.json"
        connection.save(connection_file)
        with make_connector(connection) as connector:
            objects = [info.name for info in connector.objects()]
        module = crm_module(crm)
        factory = getattr(module, "make_mutator", None) or chaos_mutator.make_mutator
        truth = Warehouse(prepare_engine(f"sqlite:///{workdir / f'truth-{crm}.db'}",
                                         TRUTH_TENANT, crm))
        session = Session(crm, org, connection, objects, factory, truth,
                          getattr(module, "compare_org", None))
        for target in targets:
            journal = session.journals[target.backend] = Journal(
                target.journal.open("a", encoding="utf-8"))
            session.warehouses[target.backend] = Warehouse(
                prepare_engine(target.url, target.tenant, crm), on_committed=journal)
            session.readers[target.backend] = EventReader(target.events)
            session.logs[target.backend] = TailReader(target.log)
            session.servers[target.backend] = ForkServer(target, connection_file, objects)
    except BaseException:
        org.stop()
        raise
    return session


def close_session(session: Session) -> None:
    for server in session.servers.values():
        server.close()
    with contextlib.suppress(Exception):
        session.org.set_faults({})
    session.org.stop()
    for journal in session.journals.values():
        journal.close()
    for warehouse in session.warehouses.values():
        warehouse.engine.dispose()
    session.truth.engine.dispose()


def run_chaos(
    options: ChaosOptions, crm: str, targets: Sequence[Target], workdir: Path,
    out: TextIO | None = None, *, on_trial: Callable[[TrialResult], None] | None = None,
) -> list[TrialResult]:
    """Run `options.trials` trials of one CRM on every target against one org."""
    out = out or sys.stdout
    results: list[TrialResult] = []
    session = start_session(crm, targets, workdir, options)
    try:
        for trial in range(options.trials):
            seed = trial_seed(options.seed, trial)
            for target in targets:
                faulthandler.dump_traceback_later(options.trial_seconds + WATCHDOG_SECONDS,
                                                  exit=True, file=2)  # stderr's fd
                try:
                    result = run_trial(session, target, trial + 1, seed, options)
                finally:
                    faulthandler.cancel_dump_traceback_later()
                results.append(result)
                if on_trial is not None:
                    on_trial(result)
                print_trial(result, options.verbose, out)
    finally:
        close_session(session)
    return results


# ============================================================ command line


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.chaos",
        description="Random faults, concurrent writes and SIGKILLed syncs against each "
        "registered CRM's sandbox; after each trial the warehouse must equal the org exactly.",
    )
    parser.add_argument("--crm", default="all",
                        help="'all' (every registered CRM with a sandbox) or comma-separated "
                        f"keys of {', '.join(sandboxed_crms())} (default %(default)s)")
    add_common_arguments(parser, trials=DEFAULT_TRIALS, trials_help="trials per CRM and backend",
                         seed=DEFAULT_SEED, seed_help="seed of the orgs; trial n uses seed+n-1")
    parser.add_argument("--opportunities", type=int, default=DEFAULT_OPPORTUNITIES,
                        help="opportunities seeded in each org (default %(default)s)")
    parser.add_argument("--trial-seconds", type=float, default=DEFAULT_TRIAL_SECONDS,
                        help="how long mutations, syncs and kills run per trial "
                        "(default %(default)s)")
    parser.add_argument("--no-purge", action="store_true",
                        help="never empty a recycle bin (where a richer mutator can)")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error("--trials must be at least 1")
    if args.opportunities < 10:
        parser.error("--opportunities must be at least 10")
    if args.trial_seconds <= 0:
        parser.error("--trial-seconds must be positive")
    known = sandboxed_crms()
    args.crms = known if args.crm == "all" else [c.strip() for c in args.crm.split(",")
                                                 if c.strip()]
    unknown_crms = sorted(set(args.crms) - set(known))
    if unknown_crms or not args.crms:
        parser.error(f"unknown CRM(s) {unknown_crms}: use 'all' or some of {', '.join(known)}")
    check_backends(parser, args)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    options = ChaosOptions(trials=args.trials, seed=args.seed, opportunities=args.opportunities,
                           trial_seconds=args.trial_seconds, purge=not args.no_purge,
                           verbose=args.verbose)
    began = time.monotonic()
    results: list[TrialResult] = []
    # SIGTERM ends the run as Ctrl-C does: sandboxes stopped, scratch database dropped.
    with interrupt_on_sigterm(), scratch_warehouses(args.backends, args.postgres_url,
                                                    SCRATCH_PREFIX, args.keep) as (workdir, urls):
        if not urls:
            print("no backend to run on", file=sys.stderr)
            return 2
        print(f"chaos: {', '.join(args.crms)}; {options.trials} trial(s) x {len(urls)} "
              f"backend(s) per CRM, {options.opportunities} opportunities, "
              f"{options.trial_seconds:g} s per trial, seed {options.seed}, started "
              f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC", flush=True)
        print(HEADER, flush=True)
        try:
            for crm in args.crms:
                targets = [Target(backend, url, f"chaos-{crm}", workdir, crm)
                           for backend, url in urls.items()]
                results += run_chaos(options, crm, targets, workdir)
        except KeyboardInterrupt:
            log("interrupted; the sandboxes and the scratch database are cleaned up")
            return 130
        except ChaosError as exc:
            log(f"chaos run failed (a harness problem, not a finding): {exc}")
            return 2
    print(file=sys.stdout)
    print(summary(results), flush=True)
    return verdict(sum(len(r.mismatches) for r in results), len(results), began)


if __name__ == "__main__":
    sys.exit(main())
