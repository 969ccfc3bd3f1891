"""Time to first recommendation: a new tenant's activation to its first price recommendations.

Starts a local Salesforce sandbox seeded with the demo data set (2,000 opportunities),
registers a tenant on a fresh SQLite warehouse and measures, in-process, the sync of
every object plus the `price_recommendations` asset. Run: python -m benchmarks.first_recommendation
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

DEMO_OPPORTUNITIES = 2000
TENANT = "bench-first-rec"


def measure(n_opportunities: int = DEMO_OPPORTUNITIES) -> dict[str, float]:
    """Seconds for the initial sync and for the recommendations, and the total."""
    import dagster as dg

    from accrue import crypto, db, tenants
    from accrue.analytics import store
    from accrue.schema import price_recommendation
    from accrue_pipelines.analytics.assets import price_recommendations
    from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME
    from accrue_pipelines.platform.resources import CrmResource, WarehouseResource
    from accrue_pipelines.sync.assets import sync_assets
    from connectors.salesforce.sandbox import running_sandbox

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        os.environ.setdefault("ACCRUE_SECRET_KEYS", crypto.generate_key())
        os.environ["ACCRUE_HOME"] = str(home)
        sandbox = running_sandbox(str(home / "sf.db"), port=0, n_opportunities=n_opportunities)
        try:
            url = f"sqlite:///{home / 'warehouse.db'}"
            engine = db.make_engine(url)
            db.upgrade(engine)
            tenants.add_tenant(engine, TENANT, "Bench Co", "salesforce")
            tenants.save_credentials(
                engine, TENANT, "salesforce",
                {"username": sandbox.username, "password": sandbox.password,
                 "security_token": sandbox.security_token},
                {"sandbox_url": sandbox.url},
            )
            warehouse = WarehouseResource(database_url=url)
            resources = {"warehouse": warehouse, "crm": CrmResource(warehouse=warehouse)}
            with dg.instance_for_test() as instance:
                start = time.perf_counter()  # activation: the tenant's partition appears
                instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [TENANT])
                assert dg.materialize(sync_assets, instance=instance, partition_key=TENANT,
                                      resources=resources).success
                synced = time.perf_counter()
                assert dg.materialize([price_recommendations], instance=instance,
                                      partition_key=TENANT, resources=resources).success
                done = time.perf_counter()
            rows = store.read_rows(engine, price_recommendation, TENANT)
            engine.dispose()
        finally:
            sandbox.stop()
    return {"sync_s": synced - start, "recommendations_s": done - synced,
            "total_s": done - start, "recommendations": float(len(rows)),
            "by_model": float(sum(r["method"] == "model" for r in rows))}


def main() -> None:
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)
    figures = measure()
    print(f"time to first recommendation ({DEMO_OPPORTUNITIES} opportunities, SQLite, "
          f"in-process): {figures['total_s']:.1f} s "
          f"(sync {figures['sync_s']:.1f} s + price_recommendations "
          f"{figures['recommendations_s']:.1f} s; {figures['recommendations']:.0f} "
          f"recommendations, {figures['by_model']:.0f} from the model)")


if __name__ == "__main__":
    main()
