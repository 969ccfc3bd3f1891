"""The CRM-shaped scenarios of `make eval`: tables and targets (see accrue.analytics.scenarios).

Why a module of its own: `eval_pricing` reports the clean and confounded tenants; this
reports the scenarios that real customer data broke (issue 10), the honesty fall-backs
per scenario, and the false-flag rate of the seller comparison, and turns them into the
targets `make eval` enforces.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from accrue.analytics import scenario_eval as se
from accrue.analytics.evaluation import METHODS, OURS
from accrue.analytics.scenarios import BY_NAME, SCENARIOS
from accrue.analytics.sellers import ALPHA, wilson_interval

FLAG_SCENARIOS: tuple[str, ...] = ("identical sellers", "identical sellers, $0 losses")


def scenario_job(args: tuple[str, int]) -> se.ScenarioResult:
    """One scenario tenant, priced and scored (a process-pool job)."""
    name, seed = args
    return se.evaluate_scenario(BY_NAME[name], seed)


def flag_job(args: tuple[str, int]) -> se.FlagResult:
    """The seller comparison on one identical-sellers tenant (a process-pool job)."""
    name, seed = args
    return se.seller_flags(BY_NAME[name], seed)


def jobs(seeds: int, flag_seeds: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """Scenario jobs (slowest first, for an even pool) and seller-flag jobs."""
    ordered = sorted(SCENARIOS, key=lambda s: -s.years)
    return ([(s.name, k) for s in ordered for k in range(seeds)],
            [(name, k) for name in FLAG_SCENARIOS for k in range(flag_seeds)])


def _pct(value: float) -> str:
    return f"{value:.2%}" if np.isfinite(value) else "—"


def regret_table(results: Sequence[se.ScenarioResult]) -> pd.DataFrame:
    """Mean relative regret per scenario and policy, and how often ours beats every baseline."""
    rows = []
    for name in dict.fromkeys(r.scenario for r in results):
        mine = [r for r in results if r.scenario == name]
        regret = pd.DataFrame([r.regret for r in mine])
        best_simple = regret[list(se.SIMPLE_BASELINES)].min(axis=1)
        rows.append({"scenario": name, "seeds": len(mine),
                     **{p: _pct(regret[p].mean()) for p in se.POLICIES},
                     se.NO_CORRECTION: _pct(regret[se.NO_CORRECTION].mean())
                     if se.NO_CORRECTION in regret else "—",
                     "ours < best simple (seeds)":
                     f"{int((regret[OURS] < best_simple - 1e-12).sum())} / {len(mine)}"})
    return pd.DataFrame(rows)


def fallback_table(results: Sequence[se.ScenarioResult],
                   main: Sequence[dict[str, object]] = ()) -> pd.DataFrame:
    """Share of open deals per `method`, and clamped, per scenario (mean over seeds)."""
    rows = []
    for variant in dict.fromkeys(str(r["variant"]) for r in main):
        chosen = [r for r in main if r["variant"] == variant]
        shares = pd.DataFrame([r["methods"] for r in chosen]).mean()
        rows.append({"scenario": f"{variant} (main)", **{m: _pct(shares[m]) for m in METHODS},
                     "clamped": _pct(float(np.mean([r["clamped_share"] for r in chosen]))),
                     "seeds with a curve": f"{sum(not r['reasons'] for r in chosen)} / "
                                           f"{len(chosen)}"})
    for name in dict.fromkeys(r.scenario for r in results):
        mine = [r for r in results if r.scenario == name]
        deals = sum(r.open_deals for r in mine)
        counts = pd.DataFrame([r.methods for r in mine]).sum()
        clamped = sum(sum(r.clamps.values()) for r in mine)
        rows.append({"scenario": name, **{m: _pct(counts[m] / deals) for m in METHODS},
                     "clamped": _pct(clamped / deals),
                     "seeds with a curve": f"{sum(r.usable for r in mine)} / {len(mine)}"})
    return pd.DataFrame(rows)


def reason_lines(results: Sequence[se.ScenarioResult]) -> list[str]:
    """Per scenario, each kind of fall-back reason and clamp with its share of open deals."""
    lines = []
    for name in dict.fromkeys(r.scenario for r in results):
        mine = [r for r in results if r.scenario == name]
        deals = sum(r.open_deals for r in mine)
        for label, field in (("fallback_reason", "reasons"), ("clamp", "clamps")):
            counts = pd.DataFrame([getattr(r, field) for r in mine]).sum()
            if len(counts):
                text = "; ".join(f"{k} {v / deals:.1%}"
                                 for k, v in counts.sort_values(ascending=False).items())
                lines.append(f"  {name}, {label}: {text}")
    return lines


def flag_table(results: Sequence[se.FlagResult]) -> pd.DataFrame:
    """False flags of the seller comparison per identical-sellers scenario."""
    rows = []
    for name in dict.fromkeys(r.scenario for r in results):
        mine = [r for r in results if r.scenario == name]
        months = sum(r.months for r in mine)
        flagged = sum(r.months_flagged for r in mine)
        seller_months = sum(r.seller_months for r in mine)
        flags = sum(r.flags for r in mine)
        low, high = _wilson(flagged, months)
        kinds = pd.DataFrame([r.kinds for r in mine]).sum()
        rows.append({
            "scenario": name, "seeds": len(mine), "team-months": months,
            "with a flag": f"{flagged} ({flagged / months:.2%}, 95% CI {low:.2%}–{high:.2%})",
            "nominal": f"≤ {ALPHA:.0%}",
            "flags per seller-month": f"{flags / seller_months:.3%} of {seller_months:,}",
            "kinds": "; ".join(f"{k}: {int(v)}" for k, v in kinds.items()) or "none",
        })
    return pd.DataFrame(rows)


def _wilson(k: int, n: int) -> tuple[float, float]:
    low, high = wilson_interval(k, n)
    return float(low), float(high)


def main_targets(rows: Sequence[dict[str, object]]) -> list[se.Target]:
    """The clean and confounded tenants, held to the scenarios' regret targets."""
    targets = []
    for variant in dict.fromkeys(str(r["variant"]) for r in rows):
        regret = pd.DataFrame([r["regret"] for r in rows if r["variant"] == variant])
        targets += se.regret_targets(f"{variant} (main)", regret)
    return targets


def report(results: Sequence[se.ScenarioResult], flags: Sequence[se.FlagResult],
           main: Sequence[dict[str, object]]) -> tuple[list[se.Target], dict[str, object]]:
    """Print the scenario tables; return every target and a JSON-ready summary."""
    regret = regret_table(results)
    print("\n== Scenarios from real CRM data (issue 10): relative regret of expected margin "
          "(revenue where products have no unit cost) against the true optimum ==")
    print(regret.to_string(index=False))
    fallback = fallback_table(results, main)
    print("\n== Honesty fall-backs: share of open deals per method, and clamped ==")
    print(fallback.to_string(index=False))
    print("\n".join(reason_lines(results)))
    flag = flag_table(flags)
    print("\n== Seller comparison with identical sellers: every flag is a false one ==")
    print(f"  nominal: {se.nominal_flag_rate()}")
    print(flag.to_string(index=False))
    targets = main_targets(main) + se.scenario_targets(list(results)) + se.flag_targets(
        list(flags))
    return targets, {"scenario_regret": regret.to_dict("records"),
                     "fallbacks": fallback.to_dict("records"),
                     "seller_flags": flag.to_dict("records")}


def print_targets(targets: Sequence[se.Target]) -> int:
    """Print the headline targets and every miss; the number of misses."""
    print("\n== Targets (OK / MISS) ==")
    shown = [t for t in targets if t.headline or not t.ok]
    for target in shown:
        print("  " + target.line())
    quiet = len(targets) - len(shown)
    if quiet:
        print(f"  OK   {quiet} further checks at 0 violations (every open deal a row, every "
              "fall-back with its reason, exclusions only without a list value, ...)")
    misses = sum(not t.ok for t in targets)
    print(f"  {len(targets) - misses} of {len(targets)} targets met"
          + (f"; {misses} MISS" if misses else ""))
    return misses
