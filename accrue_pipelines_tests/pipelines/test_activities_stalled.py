"""The stalled-deal rule with activities: idle since the last call, e-mail or meeting.

Why: a deal whose close date a seller keeps pushing changes every week, yet nobody has
talked to the customer for months; with activities imported the rule sees it. Without
them (or for a deal that has none) the rule stays what it was: idle since the last change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pandas as pd

from accrue import tenants
from accrue.analytics import store
from accrue.analytics.opportunities import last_activity, stalled
from accrue.schema import revenue_opportunity
from accrue_pipelines.analytics.assets import revenue_opportunities
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.sync.assets import sync_assets
from accrue_pipelines_tests.pipelines import test_pipelines

NOW = datetime(2026, 6, 1, tzinfo=UTC)
resources = test_pipelines.resources  # the warehouse and CRM resources, as the pipelines use


def _deals(**modified_days_ago: int) -> pd.DataFrame:
    """Ten closed deals with a 20-day cycle, and the named open deals."""
    rows = []
    for i in range(10):
        close = NOW - timedelta(days=100 + i)
        rows.append({"opportunity_id": f"closed-{i}", "account_id": "a", "is_closed": True,
                     "is_won": i % 2 == 0, "industry": "Retail", "size_band": "SMB",
                     "created_at": close - timedelta(days=20),
                     "close_date": pd.Timestamp(close.date()), "amount": 1000.0,
                     "probability": 100.0, "source_modified_at": close})
    for name, days in modified_days_ago.items():
        rows.append({"opportunity_id": name, "account_id": "a", "is_closed": False,
                     "is_won": False, "industry": "Retail", "size_band": "SMB",
                     "created_at": NOW - timedelta(days=400), "close_date": pd.NaT,
                     "amount": 5000.0, "probability": 50.0,
                     "source_modified_at": NOW - timedelta(days=days)})
    return pd.DataFrame(rows)


def test_without_activities_idle_means_no_change_to_the_deal() -> None:
    found = stalled(_deals(pushed=2, forgotten=90), NOW)
    assert list(found["opportunity_id"]) == ["forgotten"]
    assert found["reason"].iloc[0].startswith("no change for 90 days")


def test_with_activities_idle_means_no_activity_and_falls_back_per_deal() -> None:
    last = pd.Series({"pushed": pd.Timestamp(NOW - timedelta(days=75)),
                      "forgotten": pd.Timestamp(NOW - timedelta(days=3))})
    found = stalled(_deals(pushed=2, forgotten=90, silent=60), NOW, last)
    reasons = dict(zip(found["opportunity_id"], found["reason"], strict=True))
    # Changed two days ago, but nobody talked to the customer for 75 days: stalled.
    assert reasons["pushed"].startswith("no activity for 75 days")
    assert "forgotten" not in reasons  # a call three days ago: alive
    assert reasons["silent"].startswith("no change for 60 days")  # no activity at all
    assert set(stalled(_deals(pushed=2), NOW, pd.Series(dtype=object))["opportunity_id"]) \
        == set()  # activities imported, none logged yet: today's rule


def test_the_last_activity_is_the_last_one_that_happened() -> None:
    frame = pd.DataFrame([
        {"opportunity_id": "d", "activity_at": NOW - timedelta(days=40),
         "source_created_at": NOW - timedelta(days=41)},  # a call, done
        {"opportunity_id": "d", "activity_at": NOW + timedelta(days=5),
         "source_created_at": NOW - timedelta(days=10)},  # a meeting booked for next week
        {"opportunity_id": "e", "activity_at": None,
         "source_created_at": NOW - timedelta(days=7)},  # an open to-do
    ])
    last = last_activity(frame, NOW)
    assert last["d"] == pd.Timestamp(NOW - timedelta(days=10))  # booking it touched the deal
    assert last["e"] == pd.Timestamp(NOW - timedelta(days=7))
    assert last_activity(frame.iloc[0:0], NOW).empty


def test_revenue_opportunities_use_activities_only_when_the_tenant_imports_them(
    engine, tenant_id, sf_sandbox, resources, warehouse
) -> None:
    tenants.add_tenant(engine, tenant_id, "Stalled Co", "salesforce",
                       optional_objects=["activity"])
    tenants.save_credentials(
        engine, tenant_id, "salesforce",
        {"username": sf_sandbox.username, "password": sf_sandbox.password,
         "security_token": sf_sandbox.security_token},
        {"sandbox_url": sf_sandbox.url},
    )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id])
        assert dg.materialize(sync_assets, instance=instance, partition_key=tenant_id,
                              resources=resources).success
        data = store.load_tenant(engine, tenant_id)
        open_ids = set(data.deals.loc[~data.deals["is_closed"], "opportunity_id"])
        activities = store.open_deal_activities(engine, tenant_id)
        assert set(activities["opportunity_id"]) <= open_ids and len(activities)
        # One open deal: a seller touched the record today, the last activity was long ago.
        deal = sorted(open_ids)[0]
        table = store.object_table("activity")
        old = NOW.replace(year=2020)
        with engine.begin() as conn:
            conn.execute(table.update().where(table.c.tenant_id == tenant_id,
                                              table.c.opportunity_id == deal)
                         .values(activity_at=old, source_created_at=old))

        def run() -> tuple[str, dict[str, str]]:
            result = dg.materialize([revenue_opportunities], instance=instance,
                                    partition_key=tenant_id, resources=resources)
            meta = result.asset_materializations_for_node("revenue_opportunities")[0].metadata
            rows = store.read_rows(engine, revenue_opportunity, tenant_id)
            return meta["stalled_rule"].value, {r["opportunity_id"]: r["reason"]
                                                for r in rows if r["kind"] == "stalled"}

        rule, found = run()
        assert rule == "no activity"
        assert found[deal].startswith("no activity for")
        tenants.set_optional_objects(engine, tenant_id, [])
        rule, found = run()
        assert rule == "no change"
        assert all(reason.startswith("no change") for reason in found.values())
