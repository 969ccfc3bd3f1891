"""What the chaos run prints: one line per trial, then totals per CRM and backend.

Apart from `benchmarks.chaos` so the run's control flow and its report can each be read
(and changed) alone; `benchmarks.chaos` re-exports `TrialResult`, `print_trial` and
`summary`.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

from benchmarks.chaos_compare import Mismatch

MISMATCH_LINES = 8  # mismatch details printed per trial (all of them with --verbose)


@dataclass
class TrialResult:
    crm: str
    trial: int
    seed: int
    backend: str
    mutations: int
    faults: int | None  # None: the sandbox does not report what it injected
    kills: int
    rows: int
    mismatches: list[Mismatch]
    seconds: float
    fault_kinds: dict[str, int] = field(default_factory=dict)
    mutation_kinds: dict[str, int] = field(default_factory=dict)
    uncertain_writes: int = 0
    mutation_errors: dict[str, int] = field(default_factory=dict)  # refused or failed writes
    syncs: dict[str, int] = field(default_factory=dict)
    retries: dict[str, int] = field(default_factory=dict)  # what the worker's adapter retried
    worker_crashes: list[str] = field(default_factory=list)
    quarantined: int = 0
    plan: str = ""


HEADER = (f"{'crm':<11} {'trial':>5}  {'seed':>6}  {'backend':<10}  {'mutations':>9}  "
          f"{'faults':>6}  {'kills':>5}  {'rows':>6}  {'mismatches':>10}  {'seconds':>7}")


def _faults(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def print_trial(result: TrialResult, verbose: bool, out: TextIO) -> None:
    print(f"{result.crm:<11} {result.trial:>5}  {result.seed:>6}  {result.backend:<10}  "
          f"{result.mutations:>9}  {_faults(result.faults):>6}  {result.kills:>5}  "
          f"{result.rows:>6}  {len(result.mismatches):>10}  {result.seconds:>7.1f}",
          file=out, flush=True)
    if verbose:
        print(f"       faults {json.dumps(result.fault_kinds, sort_keys=True)}", file=out)
        print(f"       plan {result.plan}", file=out)
        print(f"       mutations {json.dumps(result.mutation_kinds, sort_keys=True)} "
              f"(+{result.uncertain_writes} uncertain)", file=out)
        print(f"       mutator errors {json.dumps(result.mutation_errors, sort_keys=True)}",
              file=out)
        print(f"       worker syncs {json.dumps(result.syncs, sort_keys=True)}", file=out)
        print(f"       worker retries {json.dumps(result.retries, sort_keys=True)}", file=out)
    if result.quarantined:
        print(f"       NOTE {result.quarantined} record(s) in open quarantine", file=out)
    for crash in result.worker_crashes:
        print(f"       WORKER CRASH {crash}", file=out)
    shown = result.mismatches if verbose else result.mismatches[:MISMATCH_LINES]
    for mismatch in shown:
        print(f"       MISMATCH {mismatch}", file=out)
    if len(shown) < len(result.mismatches):
        print(f"       ... {len(result.mismatches) - len(shown)} more (--verbose shows all)",
              file=out)
    out.flush()


def summary(results: Sequence[TrialResult]) -> str:
    """Totals per CRM and backend, and overall, plus faults and mismatches by kind."""
    lines = [f"{'crm':<11}{'backend':<12}{'trials':>7}{'kills':>7}{'faults':>8}"
             f"{'mutations':>11}{'rows compared':>15}{'mismatches':>12}{'median s':>10}"]
    groups: dict[tuple[str, str], list[TrialResult]] = {}
    for result in results:
        groups.setdefault((result.crm, result.backend), []).append(result)
    rows = [*groups.items(), (("all", ""), list(results))] if len(groups) > 1 else list(
        groups.items())
    for (crm, backend), group in rows:
        counted = [r.faults for r in group if r.faults is not None]
        faults = str(sum(counted)) if counted else "n/a"
        lines.append(
            f"{crm:<11}{backend:<12}{len(group):>7}{sum(r.kills for r in group):>7}"
            f"{faults:>8}{sum(r.mutations for r in group):>11}"
            f"{sum(r.rows for r in group):>15}{sum(len(r.mismatches) for r in group):>12}"
            f"{statistics.median(r.seconds for r in group):>10.1f}"
        )
    totals: dict[str, Counter[str]] = {name: Counter() for name in (
        "faults by kind", "mutations by kind", "worker syncs", "worker retries by cause",
        "mismatches by kind")}
    for result in results:
        totals["faults by kind"].update(result.fault_kinds)
        totals["mutations by kind"].update(result.mutation_kinds)
        totals["worker syncs"].update(result.syncs)
        totals["worker retries by cause"].update(result.retries)
        totals["mismatches by kind"].update(f"{result.crm}:{m.kind}" for m in result.mismatches)
    for name, counter in totals.items():
        if counter or name != "mismatches by kind":
            lines.append(f"{name}: {json.dumps(dict(sorted(counter.items())))}")
    crashes = sum(len(r.worker_crashes) for r in results)
    if crashes:
        lines.append(f"worker crashes (exits nobody caused): {crashes}")
    return "\n".join(lines)
