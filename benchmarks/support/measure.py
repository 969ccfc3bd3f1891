"""Measuring and printing: progress lines, RSS, CPU, the machine, medians and tables.

Every benchmark reports the same figures the same way, so they are computed here once.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sqlite3
import statistics
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def log(message: str) -> None:
    """Progress goes to stderr, so stdout holds only the results."""
    print(message, file=sys.stderr, flush=True)


def say(message: str) -> None:
    """A progress line with the time of day, for the long runs a person watches."""
    log(f"[{datetime.now():%H:%M:%S}] {message}")


def peak_rss_mb() -> float:
    """This process's own peak resident set size, in MiB.

    On Linux this is VmHWM, the high-water mark of the current address space. Not
    ru_maxrss: a child started by subprocess (vfork + exec) inherits the parent's
    ru_maxrss, so it would report the orchestrator's peak whenever that is larger.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return ru_maxrss_mb()


def ru_maxrss_mb() -> float:
    """ru_maxrss in MiB (KiB on Linux, bytes on macOS); includes inherited peaks, see above."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def cpu_seconds() -> float:
    """User plus system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_info() -> dict[str, Any]:
    """What a result file records about where it was measured."""
    import sqlalchemy as sa

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sa.__version__,
    }


def machine_line() -> str:
    """One line for a report: CPUs, memory and the load average (the machines are shared)."""
    import psutil

    load = os.getloadavg()
    mem = psutil.virtual_memory()
    return (f"{psutil.cpu_count()} CPUs, {mem.total / 2**30:.0f} GB RAM, load average "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min), "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


def percentile(values: Iterable[float | None], q: float) -> float | None:
    """The q-quantile (0..1) with linear interpolation over the values present; None for none."""
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    k = (len(ordered) - 1) * q
    low = int(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def median(values: Iterable[Any]) -> Any:
    """The median of the values present (None values are missing figures); None for none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def rate(count: float, seconds: float) -> float:
    """Count per second, 0 when no time passed."""
    return count / seconds if seconds > 0 else 0.0


def fmt(value: float | None, spec: str = ".1f", unit: str = "") -> str:
    """A figure for a table cell, a dash when it is missing."""
    return "—" if value is None else f"{value:{spec}}{unit}"


def text_table(headers: list[str], rows: list[list[str]]) -> str:
    """Plain aligned text: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        parts = [
            str(cell).ljust(width) if i == 0 else str(cell).rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    """A Markdown table with padded columns, for reports pasted into docs."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
            for r in rows]
    return "\n".join([line, rule, *body])


def bench_dir() -> Path:
    """<ACCRUE_HOME>/bench: results, logs and cached orgs that outlive a run."""
    from accrue import config

    path = config.accrue_home() / "bench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_results(results: Any, output: Path | None, default_name: str) -> Path:
    """The results as JSON at `output`, by default <ACCRUE_HOME>/bench/`default_name`."""
    path = output or bench_dir() / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    return path
