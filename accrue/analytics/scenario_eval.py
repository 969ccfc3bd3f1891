"""Scoring the CRM-shaped scenarios: regret, honesty fall-backs, false flags, and targets.

Why: the clean evaluation showed the model beating every baseline while real data broke
it (issue 10). Each scenario of `scenarios` is priced by our model and the baselines
and scored against the synthetic truth; what `recommend` did with every open deal
(`method`, `fallback_reason`, `clamp`) is counted; the seller comparison is run where
no seller differs, so every flag is a false one. `targets` turns the measurements into
pass/fail checks with their reference, which `make eval` prints and enforces.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pandas as pd

from accrue.analytics import sellers
from accrue.analytics.evaluation import (
    METHODS,
    OURS,
    POOLED,
    POOLED_CONFIG,
    baseline_ratios,
    bootstrap_ci,
)
from accrue.analytics.features import priced_ratio
from accrue.analytics.optimum import optimal_ratio
from accrue.analytics.pricing import PricingConfig, fit_price_model, recommend
from accrue.analytics.scenarios import (
    ZERO_QUOTE,
    CrmTenant,
    Scenario,
    expected_margin,
    relative_regret,
    simulate_crm,
)

AT_LIST = 0.995  # a recommendation at or above this ratio is "at list"
SIMPLE_BASELINES: tuple[str, ...] = (
    "list price", "historical mean discount", "segment median won price")
POLICIES: tuple[str, ...] = (OURS, POOLED, *SIMPLE_BASELINES)
# Not a baseline: ours with the missing-quote offset switched off (scenarios with missing
# quotes only; elsewhere the offset is exactly 0 and the fit the same).
NO_CORRECTION = "ablation: ours without the missing-quote correction"


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario tenant: regret per policy, what happened to each open deal, the checks."""

    scenario: str
    seed: int
    regret: dict[str, float]
    methods: dict[str, int]  # open deals per `method` of our recommendations
    reasons: dict[str, int]  # open deals per "method: kind of fallback_reason"
    clamps: dict[str, int]  # open deals per `clamp` label
    checks: dict[str, int]  # violations counted per check (targets want 0)
    open_deals: int
    usable: bool  # our model found a tenant curve
    identification: str


def reason_kind(text: object) -> str | None:
    """A fall-back reason without its numbers, to count how often each kind fires."""
    if not isinstance(text, str) or not text:
        return None
    head = re.split(r" \(|;|,|:(?! )", text)[0] if not text.startswith("not priced:") \
        else re.split(r" \(|;", text)[0]
    return re.sub(r"-?\d[\d.e+-]*", "N", head).strip()[:70]


def _recommendations(history: pd.DataFrame, fresh: pd.DataFrame, config: PricingConfig
                     ) -> tuple[pd.DataFrame, int, bool, str]:
    model = fit_price_model(history, config)
    recs = recommend(model, fresh, explain=False)
    return recs, model.n_closed, model.usable, model.identification


def _seller_month_gaps(deals: pd.DataFrame) -> tuple[int, int]:
    """(close months with a deal but no seller metrics, seller-months missing or miscounted)."""
    closed = deals[deals["is_closed"] & deals["owner_id"].notna()]
    month = closed["close_date"].dt.strftime("%Y-%m")
    expected = closed.groupby([closed["owner_id"], month]).size()
    months = sellers.months_with_deals(deals)
    got: dict[tuple[str, str], int] = {}
    for m in months:
        rows = sellers.monthly_metrics(deals, m)
        for seller, n in zip(rows["seller_id"], rows["deals_closed"], strict=True):
            if n:
                got[(seller, m)] = int(n)
    missing_months = len(set(month) - set(months))
    wrong = sum(got.get(key, 0) != n for key, n in expected.items())
    return missing_months, wrong


def _checks(tenant: CrmTenant, recs: pd.DataFrame, n_fit: int) -> dict[str, int]:
    """Violations of the honesty rules, counted (each target wants 0)."""
    history, fresh, truth = tenant.history, tenant.fresh, tenant.truth
    ids = fresh["opportunity_id"]
    rows = recs["opportunity_id"]
    no_list = set(ids[~(fresh["list_total"] > 0)])
    excluded = set(rows[recs["method"] == "excluded"])
    priced_history = priced_ratio(history)
    quoted_closed = int(truth.loc[history["opportunity_id"], "unquoted"].isna().sum())
    ceiling = float(priced_history.max()) + 0.02 if priced_history.notna().any() else math.inf
    cost = fresh.set_index("opportunity_id")["cost_ratio"].reindex(rows).to_numpy(float)
    rec = recs["recommended_ratio"].to_numpy(float)
    zero_open = set(ids[truth.loc[ids, "unquoted"].to_numpy() == ZERO_QUOTE])
    no_lost_price = not (priced_history.notna() & ~history["is_won"]).any()
    out = {
        "open deals without exactly one row": len(set(ids) ^ set(rows))
        + int(rows.duplicated().sum()),
        "rows off the model without a reason": int(
            ((recs["method"] != "model") & recs["fallback_reason"].isna()).sum()),
        "excluded rows that had a list value, or the reverse": len(excluded ^ no_list),
        "priced closed deals left out of the fit, or unquoted ones in it": abs(
            quoted_closed - n_fit),
        "raised to list by a floor": int(((rec >= AT_LIST)
                                          & (recs["unclamped_ratio"] < AT_LIST)).sum()),
        "above every observed quote (+2 points)": int(
            (rec > np.fmax(ceiling, np.nan_to_num(cost, nan=-np.inf)) + 1e-9).sum()),
        "open deals with a $0 quote left unpriced": len(zero_open & excluded),
        "priced on a curve although no lost deal has a price": int(
            recs["method"].isin(["model", "tenant_curve"]).sum()) if no_lost_price else 0,
    }
    if tenant.scenario.years > 2:
        out["close months without seller metrics"], out["seller-months missing or miscounted"] = \
            _seller_month_gaps(tenant.deals)
    return out


def evaluate_scenario(scenario: Scenario, seed: int) -> ScenarioResult:
    """Price one scenario tenant's open deals with every policy and score them on the truth."""
    tenant = simulate_crm(scenario, seed)
    history, fresh = tenant.history, tenant.fresh
    scored = fresh[fresh["list_total"] > 0]  # without a list value nobody can price a deal
    truth = tenant.truth.loc[scored["opportunity_id"]]
    a, b, c = (truth[k].to_numpy(float) for k in ("true_a", "true_b", "true_cost"))
    list_total = scored["list_total"].to_numpy(float)
    best = float(expected_margin(list_total, a, b, c, optimal_ratio(a, b, c)[0]).sum())
    ratios = baseline_ratios(history, scored)
    pooled, _, _, _ = _recommendations(history, fresh, POOLED_CONFIG)
    recs, n_fit, usable, identification = _recommendations(history, fresh, PricingConfig())
    frames = [(POOLED, pooled), (OURS, recs)]
    if scenario.quotes_missing:
        frames.append((NO_CORRECTION, _recommendations(
            history, fresh, PricingConfig(sampling_correction=False))[0]))
    for name, frame in frames:
        by_id = frame.set_index("opportunity_id")["recommended_ratio"]
        ratios[name] = by_id.reindex(scored["opportunity_id"]).to_numpy(float)
    regret = {name: relative_regret(best, float(expected_margin(list_total, a, b, c, x).sum()))
              for name, x in ratios.items()}
    return ScenarioResult(
        scenario=scenario.name, seed=seed, regret=regret,
        methods={m: int((recs["method"] == m).sum()) for m in METHODS},
        reasons=dict(Counter(f"{m}: {k}" for m, k in zip(
            recs["method"], map(reason_kind, recs["fallback_reason"]), strict=True) if k)),
        clamps=dict(Counter(recs["clamp"].dropna())),
        checks=_checks(tenant, recs, n_fit), open_deals=len(fresh), usable=usable,
        identification=identification.split(" (")[0].split(":")[0],
    )


# --------------------------------------------------------------------------- sellers


@dataclass(frozen=True)
class FlagResult:
    """The seller comparison on one tenant whose sellers all behave the same way."""

    scenario: str
    seed: int
    months: int  # team-months compared
    months_flagged: int  # team-months with at least one (false) flag
    seller_months: int  # seller-months with enough deals to be flagged
    flags: int  # flagged seller-months
    kinds: dict[str, int]  # flags per kind ("win rate ...", "discounts ...")


def seller_flags(scenario: Scenario, seed: int) -> FlagResult:
    """Run `sellers.monthly_metrics` on every month of an identical-sellers tenant."""
    deals = simulate_crm(scenario, seed).deals
    months = sellers.months_with_deals(deals[deals["is_closed"]])
    flagged_months = eligible = flags = 0
    kinds: Counter[str] = Counter()
    for month in months:
        rows = sellers.monthly_metrics(deals, month)
        eligible += int((rows["deals_closed"] >= sellers.MIN_DEALS_TO_FLAG).sum())
        found = rows["flag"].dropna()
        flags += len(found)
        flagged_months += int(len(found) > 0)
        for text in found:
            kinds.update(part.split(" (")[0].replace(" the rest of the team", "")
                         for part in text.split("; "))
    return FlagResult(scenario.name, seed, len(months), flagged_months, eligible, flags,
                      dict(kinds))


def nominal_flag_rate() -> str:
    """The false-flag rate `sellers` promises, in words, from its constants."""
    return (f"≤ {sellers.ALPHA:.0%} of team-months with any flag: sellers.ALPHA = "
            f"{sellers.ALPHA:g}, Bonferroni over 2 tests (win rate, discount) per seller with ≥ "
            f"{sellers.MIN_DEALS_TO_FLAG} closed deals in the month, so each test runs at "
            f"{sellers.ALPHA:g} / (2 · sellers) and the expected false flags per month are ≤ "
            f"{sellers.ALPHA:g}")


# --------------------------------------------------------------------------- targets

# What each check caught, or would have, before issue 10: the reference a figure is read against.
BEFORE: dict[str, str] = {
    "raised to list by a floor": "the price-book floor raised every deal of a one-book org to list",
    "open deals without exactly one row": "a tenant without a curve lost all 2,089 open deals",
    "rows off the model without a reason": "rule since the first model: every fall-back says why",
    "excluded rows that had a list value, or the reverse": "a deal is excluded only without a list",
    "priced closed deals left out of the fit, or unquoted ones in it":
        "a 2023-01 start leaves out 80 % of ten years; a $0 loss is no price",
    "above every observed quote (+2 points)": "the curve is not extended above quoted prices",
    "open deals with a $0 quote left unpriced": "a $0 quote is missing; the deal is still priced",
    "priced on a curve although no lost deal has a price": "no lost price, no curve",
    "close months without seller metrics": "MONTHS_START = 2023-01 dropped every earlier month",
    "seller-months missing or miscounted": "MONTHS_START = 2023-01 dropped every earlier month",
}
# The checks each scenario exists for (printed with their figure even when they pass).
HEADLINES: dict[str, tuple[str, ...]] = {
    "single price book": ("raised to list by a floor",),
    "lost deals unquoted": ("priced closed deals left out of the fit, or unquoted ones in it",
                            "open deals with a $0 quote left unpriced"),
    "lost deals unquoted evenly": (
        "priced closed deals left out of the fit, or unquoted ones in it",),
    "no lost deal quoted": ("open deals without exactly one row",
                            "priced on a curve although no lost deal has a price",
                            "rows off the model without a reason"),
    "ten years of history": ("close months without seller metrics",
                             "seller-months missing or miscounted",
                             "priced closed deals left out of the fit, or unquoted ones in it"),
    "list far above won prices": ("raised to list by a floor",
                                  "above every observed quote (+2 points)"),
}


@dataclass(frozen=True)
class Target:
    """A figure the evaluation must meet (measured ≤ limit, or < if strict), with its reference."""

    scenario: str
    what: str
    measured: float
    limit: float
    reference: str
    unit: str = "count"  # "count" | "points" (regret differences) | "share"
    strict: bool = False
    headline: bool = True

    @property
    def ok(self) -> bool:
        if math.isnan(self.measured):
            return False
        return self.measured < self.limit if self.strict else self.measured <= self.limit

    def show(self, value: float) -> str:
        if self.unit == "points":
            return f"{value * 100:+.2f} points"
        return f"{value:.2%}" if self.unit == "share" else f"{value:g}"

    def line(self) -> str:
        return (f"{'OK  ' if self.ok else 'MISS'} {self.scenario}: {self.what} = "
                f"{self.show(self.measured)} (target {'<' if self.strict else '≤'} "
                f"{self.show(self.limit)}; {self.reference})")


def regret_targets(scenario: str, regret: pd.DataFrame) -> list[Target]:
    """Ours below list price on the mean, and not significantly worse than any other baseline.

    `regret` has one row per seed (the same tenants for every policy), so differences are
    paired. "Not significantly worse": the paired 95 % bootstrap interval of ours − the
    baseline reaches zero or below. Ties pass (where sellers already quote near the
    optimum nothing beats the median won price by much); a fall-back to the band where a
    baseline finds a curve, or a floor at list, does not.
    """
    ours = regret[OURS].to_numpy(float)
    at_list = regret["list price"].to_numpy(float)
    targets = [Target(scenario, "ours − list price, mean regret", float(np.mean(ours - at_list)),
                      0.0, f"ours {ours.mean():.2%}, list price {at_list.mean():.2%}",
                      unit="points", strict=True)]
    for name in (POOLED, *SIMPLE_BASELINES[1:]):
        diff = ours - regret[name].to_numpy(float)
        low, high = bootstrap_ci(diff, np.random.default_rng(0))
        targets.append(Target(
            scenario, f"ours − {name}, low end of the paired 95 % CI", low, 0.0,
            f"mean {diff.mean() * 100:+.2f} [{low * 100:+.2f}, {high * 100:+.2f}] points; ours "
            f"{ours.mean():.2%}, {name} {regret[name].mean():.2%}", unit="points"))
    return targets


def scenario_targets(results: list[ScenarioResult]) -> list[Target]:
    """Every check at zero violations, and the regret targets, for each scenario run."""
    targets: list[Target] = []
    for name in dict.fromkeys(r.scenario for r in results):
        mine = [r for r in results if r.scenario == name]
        targets += regret_targets(name, pd.DataFrame([r.regret for r in mine]))
        for check in mine[0].checks:
            total = sum(r.checks[check] for r in mine)
            targets.append(Target(
                name, f"{check} ({len(mine)} seeds)", total, 0,
                "before: " + BEFORE.get(check, "0 by the rule"),
                headline=check in HEADLINES.get(name, ())))
    return targets


def flag_targets(results: list[FlagResult]) -> list[Target]:
    """Per identical-sellers scenario: the share of team-months with a flag, at most nominal."""
    targets = []
    for name in dict.fromkeys(r.scenario for r in results):
        mine = [r for r in results if r.scenario == name]
        months = sum(r.months for r in mine)
        rate = sum(r.months_flagged for r in mine) / months if months else math.nan
        targets.append(Target(
            name, f"team-months with a false flag ({months:,} months, {len(mine)} seeds)",
            rate, sellers.ALPHA,
            "nominal: sellers.ALPHA, family-wise per team-month; before issue 10 four sellers "
            "were flagged on $0 losses alone (p = 1.4e-05)", unit="share"))
    return targets
