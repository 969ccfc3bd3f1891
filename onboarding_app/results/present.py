"""What the results pages, the CSV files and the home page say: figures and states in words.

The analytics tables hold ratios of list, method codes and test results; a seller reads
prices, discounts and sentences. Every such translation lives here, so a page, its CSV
download and the home page never word the same thing differently.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

KIND_LABELS = {"cross_sell": "Cross-sell", "upsell": "Upsell", "win_back": "Win-back",
               "stalled": "Stalled deal"}
METHOD_LABELS = {"model": "Curve fitted", "tenant_curve": "Tenant-wide curve",
                 "segment band": "Band fallback", "excluded": "Excluded"}
# sellers.MIN_DEALS_TO_FLAG, said here without importing the analytics (numpy, scipy).
MIN_DEALS_TO_TELL = 5


def number(value: Any) -> float | None:
    """A finite float, or None for a missing value (None, NaN)."""
    if value is None:
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def money(value: Any, digits: int = 0) -> str:
    """An amount in the deal's own currency, as the CRM stores it ('—' when missing)."""
    amount = number(value)
    return "—" if amount is None else f"{amount:,.{digits}f}"


def compact(value: Any) -> str:
    """A large amount, short, for a crowded table: 9,500 · 688k · 1.13M."""
    amount = number(value)
    if amount is None:
        return "—"
    size = abs(amount)
    if size >= 999_500:  # what would round to 1,000k
        return f"{amount / 1e6:,.3g}M" if size < 1e9 else f"{amount / 1e6:,.0f}M"
    if size >= 1e4:
        return f"{amount / 1e3:,.0f}k"
    return f"{amount:,.0f}"


def percent(value: Any, digits: int = 0) -> str:
    share = number(value)
    return "—" if share is None else f"{share:.{digits}%}"


def off_list(discount: Any) -> str:
    """A discount as people say it: '12% off list', 'at list', '5% above list'."""
    share = number(discount)
    if share is None:
        return "—"
    if round(share, 2) == 0:
        return "at list"
    return f"{share:.0%} off list" if share > 0 else f"{-share:.0%} above list"


@dataclass(frozen=True)
class BandPoint:
    name: str  # Floor, Target, Start
    ratio: float  # of list
    price: float | None  # ratio × the deal's list value

    @property
    def discount(self) -> float:
        return 1 - self.ratio


def band(deal: dict[str, Any]) -> list[BandPoint]:
    """The deal's Floor / Target / Start guidance as prices, empty when it has no band."""
    list_total = number(deal.get("list_total"))
    points = []
    for name, key in (("Floor", "band_floor"), ("Target", "band_target"), ("Start", "band_start")):
        ratio = number(deal.get(key))
        if ratio is not None:
            price = round(ratio * list_total, 2) if list_total else None
            points.append(BandPoint(name, ratio, price))
    return points


@dataclass(frozen=True)
class Honesty:
    """How the deal's price was made, in words: a short label and the reason behind it."""

    label: str
    detail: str


def honesty(deal: dict[str, Any]) -> Honesty:
    """The honesty state of `price_recommendation.method`, with its fall-back and clamp."""
    method = str(deal.get("method") or "")
    reason = (deal.get("fallback_reason") or "").strip()
    clamp = (deal.get("clamp_reason") or "").strip()
    if method == "model":
        detail = "Priced on the win-probability curve fitted to this deal's segment."
    elif method == "tenant_curve":
        detail = ("Priced on the tenant-wide win-probability curve: the segment's own curve "
                  f"is not reliable enough. {_sentence(reason)}")
    elif method == "segment band":
        detail = ("No usable price curve: the price is the Target of the segment's band of "
                  f"won prices, and no win chance is shown. {_sentence(reason)}")
    elif method == "excluded":
        detail = f"Not priced. {_sentence(reason)}" if reason else "Not priced."
    else:
        detail = _sentence(reason)
    if clamp and method != "excluded":
        detail = f"{detail} Guardrail: {_sentence(clamp)}"
    return Honesty(METHOD_LABELS.get(method, method or "Unknown"), detail.strip())


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else f"{text}."


def drivers(text: str | None) -> list[str]:
    """The stored drivers ('; '-separated clauses) as a list, first letters capitalised."""
    return [_sentence(part) for part in (text or "").split("; ") if part.strip()]


def comparables(text: str | None) -> list[str]:
    """The stored comparable closed deals (' | '-separated) as a list."""
    return [part.strip() for part in (text or "").split(" | ") if part.strip()]


# What `accrue.analytics.sellers._flags` writes, one clause per test that fired.
_WIN_FLAG = re.compile(r"win rate (above|below) the rest of the team \((\d+%) vs (\d+%), "
                       r"p = ([^)]+)\)")
_DISCOUNT_FLAG = re.compile(r"discounts (more|less) than the rest of the team \((\d+%) vs "
                            r"(\d+%) off list, p = ([^)]+)\)")


def flag_words(clause: str) -> str:
    """One flag clause as a manager reads it; unknown text is shown as it is."""
    if found := _WIN_FLAG.fullmatch(clause.strip()):
        word, mine, rest, p = found.groups()
        verb = "Wins more often" if word == "above" else "Wins less often"
        return (f"{verb} than the rest of the team: {mine} of closed deals won against "
                f"{rest}. Too large a gap to be luck (p = {p}).")
    if found := _DISCOUNT_FLAG.fullmatch(clause.strip()):
        word, mine, rest, p = found.groups()
        verb = "Gives bigger discounts" if word == "more" else "Gives smaller discounts"
        return (f"{verb} than the rest of the team: {mine} off list on average against "
                f"{rest}. Too large a gap to be luck (p = {p}).")
    return _sentence(clause)


@dataclass(frozen=True)
class Verdict:
    """The comparison's outcome for one seller-month: 'flag', 'same' or 'too_few'."""

    state: str
    words: list[str]


def verdict(row: dict[str, Any], team_closed: int | None) -> Verdict:
    """Significant differences in words, or why there is nothing to say.

    A flag is raised by the analytics only for sellers with at least 5 closed deals in
    the month and 5 in the rest of the team; below that a difference cannot be told
    from luck, and the page says so instead of staying silent.
    """
    flag = (row.get("flag") or "").strip()
    if flag:
        return Verdict("flag", [flag_words(part) for part in flag.split("; ") if part])
    closed = int(row.get("deals_closed") or 0)
    if closed < MIN_DEALS_TO_TELL:
        return Verdict("too_few", [f"Not enough deals to tell ({closed} closed this month; "
                                   f"it takes {MIN_DEALS_TO_TELL})."])
    if team_closed is not None and team_closed - closed < MIN_DEALS_TO_TELL:
        return Verdict("too_few", ["Not enough deals in the rest of the team to tell."])
    return Verdict("same", ["No clear difference from the rest of the team."])
