"""Seller comparison: metrics against a plain pandas computation, intervals, flags, team view."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from accrue.analytics import sellers
from accrue.analytics.features import ZERO_QUOTE, build_deal_frame


def _deals(rng: np.random.Generator, plan: dict[str, tuple[int, float]], month: str = "2025-03"
           ) -> pd.DataFrame:
    """Closed deals in `month` per seller (count, win probability), plus open and other-month."""
    rows = []
    for seller, (n, p) in plan.items():
        for i in range(n):
            rows.append({
                "opportunity_id": f"{seller}-{i}", "owner_id": seller,
                "close_date": pd.Timestamp(f"{month}-01") + pd.Timedelta(days=int(i % 28)),
                "is_closed": True, "is_won": bool(rng.random() < p),
                "amount": float(rng.integers(1_000, 50_000)),
                "ratio": float(rng.uniform(0.6, 1.0)) if i % 5 else np.nan,
                "created_at": pd.Timestamp(f"{month}-01", tz="UTC")
                - pd.Timedelta(days=int(rng.integers(5, 90))),
            })
        rows.append({"opportunity_id": f"{seller}-open", "owner_id": seller,
                     "close_date": pd.Timestamp(f"{month}-20"), "is_closed": False,
                     "is_won": False, "amount": 10_000.0, "ratio": 0.9,
                     "created_at": pd.Timestamp(f"{month}-01", tz="UTC")})
        rows.append({"opportunity_id": f"{seller}-old", "owner_id": seller,
                     "close_date": pd.Timestamp("2024-01-05"), "is_closed": True,
                     "is_won": True, "amount": 99_999.0, "ratio": 0.5,
                     "created_at": pd.Timestamp("2023-12-01", tz="UTC")})
    return pd.DataFrame(rows)


def test_metrics_equal_a_straightforward_pandas_computation() -> None:
    rng = np.random.default_rng(3)
    deals = _deals(rng, {"s1": (30, 0.5), "s2": (12, 0.3), "s3": (4, 0.6)})
    users = pd.DataFrame({"source_id": ["s1", "s2", "s3"], "name": ["Ann", "Bo", "Cy"],
                          "manager_id": ["m1", "m1", "m2"]})
    got = sellers.monthly_metrics(deals, "2025-03", users, {"s1": 200_000.0}).set_index(
        "seller_id")

    d = deals.copy()
    in_month = d["close_date"].dt.strftime("%Y-%m") == "2025-03"
    closed = d[in_month & d["is_closed"]]
    for seller, part in closed.groupby("owner_id"):
        row = got.loc[seller]
        won = part[part["is_won"]]
        assert row["deals_closed"] == len(part)
        assert row["won"] == len(won)
        assert row["win_rate"] == pytest.approx(len(won) / len(part))
        assert row["revenue_won"] == pytest.approx(won["amount"].sum())
        if len(won):
            assert row["avg_deal_size"] == pytest.approx(won["amount"].mean())
        assert row["avg_discount"] == pytest.approx((1 - part["ratio"]).mean())
        cycle = [(c - cr.tz_convert(None).normalize()).days
                 for c, cr in zip(part["close_date"], part["created_at"], strict=True)]
        assert row["cycle_days"] == pytest.approx(np.mean(cycle))
        opened = d[in_month & ~d["is_closed"] & (d["owner_id"] == seller)]
        assert row["open_pipeline"] == pytest.approx(opened["amount"].sum())
    assert got.loc["s1", "quota_attainment"] == pytest.approx(got.loc["s1", "revenue_won"]
                                                              / 200_000)
    assert got.loc["s2", "quota"] is None
    team = closed["is_won"].mean()
    assert got["team_win_rate"].iloc[0] == pytest.approx(team)
    assert got.loc["s1", "manager_id"] == "m1" and got.loc["s3", "seller_name"] == "Cy"


@pytest.mark.parametrize(("k", "n", "low", "high"), [
    (0, 10, 0.0, 0.277533),
    (5, 10, 0.236593, 0.763407),
    (81, 263, 0.255289, 0.366210),
    (10, 10, 0.722467, 1.0),
])
def test_wilson_interval_values(k: int, n: int, low: float, high: float) -> None:
    lo, hi = sellers.wilson_interval(k, n)
    assert float(lo) == pytest.approx(low, abs=1e-5)
    assert float(hi) == pytest.approx(high, abs=1e-5)
    assert np.isnan(sellers.wilson_interval(0, 0)[0])


def test_small_noisy_team_gets_no_flag_and_is_shrunk_to_the_team() -> None:
    rng = np.random.default_rng(11)
    deals = _deals(rng, {f"s{i}": (6, 0.4) for i in range(4)})
    got = sellers.monthly_metrics(deals, "2025-03")
    assert got["flag"].isna().all()
    # Same true rate for all: no excess spread, so the shrunk rates collapse to the team's.
    spread_raw = got["win_rate"].astype(float).std()
    spread_shrunk = got["win_rate_shrunk"].astype(float).std()
    assert spread_shrunk <= spread_raw


def test_a_real_difference_is_flagged() -> None:
    rng = np.random.default_rng(5)
    deals = _deals(rng, {"star": (60, 0.9), "a": (60, 0.2), "b": (60, 0.2), "c": (60, 0.2)})
    got = sellers.monthly_metrics(deals, "2025-03").set_index("seller_id")
    assert "win rate above" in (got.loc["star", "flag"] or "")
    assert got.loc["star", "win_rate_percentile"] == 100


def test_manager_sees_their_team_only() -> None:
    metrics = pd.DataFrame({"seller_id": ["a", "b", "c", "d"],
                            "manager_id": ["m1", "m1", "m2", "a"]})
    assert set(sellers.team_view(metrics, "m1")["seller_id"]) == {"a", "b"}
    users = pd.DataFrame({"source_id": ["a", "b", "c", "d", "m1", "m2"],
                          "manager_id": ["m1", "m1", "m2", "a", None, None]})
    assert set(sellers.team_view(metrics, "m1", users)["seller_id"]) == {"a", "b", "d"}
    assert set(sellers.team_view(metrics, "m2", users)["seller_id"]) == {"c"}


def test_zero_quotes_are_missing_not_a_full_discount() -> None:
    """Issue 10.3: lost deals recorded at $0 are missing prices, not 100 % discounts.

    Four sellers with the same behaviour; one records its lost deals with a $0 amount
    and $0 lines. Read through the deal frame, as the asset does, nobody is flagged.
    """
    rng = np.random.default_rng(8)
    opps, lines = [], []
    for seller in ("s1", "s2", "s3", "s4"):
        for i in range(40):
            oid, won = f"{seller}-{i}", bool(rng.random() < 0.4)
            quote = 0.0 if seller == "s1" and not won else 1000.0 * rng.uniform(0.7, 0.95)
            opps.append({"source_id": oid, "owner_id": seller, "is_closed": True,
                         "is_won": won, "close_date": pd.Timestamp("2025-03-10"),
                         "amount": quote,
                         "source_created_at": pd.Timestamp("2025-01-10", tz="UTC")})
            lines.append({"source_id": f"L{oid}", "opportunity_id": oid, "product_id": "P",
                          "quantity": 10.0, "list_price": 100.0, "unit_price": quote / 10,
                          "total_price": quote})
    raw = pd.DataFrame(opps)
    frame = build_deal_frame(raw, pd.DataFrame(lines)).merge(
        raw.rename(columns={"source_id": "opportunity_id", "source_created_at": "created_at"})[
            ["opportunity_id", "amount", "created_at"]], on="opportunity_id")
    got = sellers.monthly_metrics(frame, "2025-03").set_index("seller_id")
    assert got["flag"].isna().all(), got["flag"].dropna().to_dict()
    s1 = frame[frame["owner_id"] == "s1"]
    priced = s1[s1["is_won"]]
    assert got.loc["s1", "avg_discount"] == pytest.approx((1 - priced["ratio"]).mean())
    assert got.loc["s1", "avg_discount"] < 0.35  # not pulled towards 100 %
    zero = s1[~s1["is_won"]]
    assert len(zero) > 15 and (zero["exclusion"] == ZERO_QUOTE).all()
    assert got.loc["s1", "avg_deal_size"] == pytest.approx(priced["amount"].mean())


def test_zero_amount_wins_do_not_lower_the_average_deal_size() -> None:
    deals = pd.DataFrame({
        "opportunity_id": ["a", "b", "c"], "owner_id": "s1",
        "close_date": pd.Timestamp("2025-03-03"), "is_closed": True, "is_won": True,
        "amount": [10_000.0, 0.0, np.nan], "ratio": [0.8, 0.0, np.nan],
        "created_at": pd.Timestamp("2025-02-01", tz="UTC"),
    })
    row = sellers.monthly_metrics(deals, "2025-03").iloc[0]
    assert row["won"] == 3 and row["revenue_won"] == pytest.approx(10_000.0)
    assert row["avg_deal_size"] == pytest.approx(10_000.0)
    assert row["avg_discount"] == pytest.approx(0.2)
