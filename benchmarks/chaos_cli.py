"""What every chaos run's command line shares (benchmarks.chaos, chaos_push, chaos_import):
the common options, the backends check, the per-trial lines and the closing verdict."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from benchmarks.support.databases import default_postgres_url, parse_backends

POSTGRES_ENV = "ACCRUE_CHAOS_POSTGRES_URL"
SCRATCH_PREFIX = "accrue_chaos"  # scratch databases' and work directories' names


def add_common_arguments(parser: argparse.ArgumentParser, *, trials: int = 3,
                         trials_help: str = "trials per backend",
                         seed: int = 1, seed_help: str = "seed") -> None:
    """The options every chaos run has: trials, backends, seed, server, keep, verbose."""
    parser.add_argument("--trials", type=int, default=trials,
                        help=f"{trials_help} (default %(default)s)")
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="comma-separated: sqlite, postgresql (default %(default)s)")
    parser.add_argument("--seed", type=int, default=seed,
                        help=f"{seed_help} (default %(default)s)")
    parser.add_argument("--postgres-url",
                        default=default_postgres_url(POSTGRES_ENV, "ACCRUE_TEST_POSTGRES_URL"),
                        help=f"server to create the scratch database on (default "
                        f"${POSTGRES_ENV}, $ACCRUE_TEST_POSTGRES_URL or the local test server)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (SQLite files, journals, logs)")
    parser.add_argument("--verbose", action="store_true", help="print every mismatch")


def check_backends(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`--backends` as a list of sqlite and/or postgresql, or a usage error."""
    args.backends, unknown = parse_backends(args.backends)
    if unknown or not args.backends:
        parser.error(f"unknown backend(s) {unknown}: use sqlite and/or postgresql")


def print_mismatches(mismatches: Sequence[str], verbose: bool) -> None:
    """A trial's mismatches under its line: the first five, or all with --verbose."""
    for mismatch in mismatches[:None if verbose else 5]:
        print(f"    {mismatch}", flush=True)


def verdict(mismatches: int, trials: int, began: float, *details: str) -> int:
    """Print the closing line (OK or FAILED, with what was done) and return the exit code."""
    print(f"{'FAILED' if mismatches else 'OK'}: {mismatches} mismatch(es) in {trials} trial "
          f"runs, {''.join(f'{d}, ' for d in details)}{time.monotonic() - began:.0f} s",
          flush=True)
    return 1 if mismatches else 0
