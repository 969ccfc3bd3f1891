"""The code location's inventory: what the webserver, the daemon and the CLI load.

Held literally so that moving code between modules or domains (accrue_pipelines is
packaged by domain, each with its own `defs`) can never add, drop or rename an asset,
check, job, sensor or resource unnoticed.
"""

from __future__ import annotations

import importlib

import dagster as dg
import pytest

from accrue_pipelines.analytics.definitions import defs as analytics_defs
from accrue_pipelines.definitions import defs
from accrue_pipelines.onboarding.definitions import defs as onboarding_defs
from accrue_pipelines.ops.definitions import defs as ops_defs
from accrue_pipelines.sync.definitions import defs as sync_defs

CRM_OBJECTS = ["account", "activity", "contact", "lead", "opportunity", "opportunity_line",
               "price_book_entry", "product", "user"]
EXPECTED = {
    "assets": sorted([*(f"crm/{o}" for o in CRM_OBJECTS), "ops/fleet_health",
                      "ops/tenant_health", "pipeline_summary", "price_recommendations",
                      "revenue_opportunities", "seller_metrics"]),
    "checks": sorted([*(f"crm/{o}:{check}" for o in CRM_OBJECTS for check in
                        ("quarantine_empty", "sync_healthy", "warehouse_matches_crm")),
                      "ops/tenant_health:tenant_fresh"]),
    "jobs": ["__ASSET_JOB", "analyze_tenant", "sync_tenant"],
    "sensors": ["downstream_refresh_sensor", "first_data_email_sensor", "sync_failure_sensor",
                "tenant_health_sensor", "tenant_sync_sensor"],
    "schedules": [],
    "resources": ["crm", "warehouse"],
    "groups": ["analytics", "crm_sync", "ops", "tenant_overview"],
}
DOMAINS = {"sync": sync_defs, "analytics": analytics_defs, "onboarding": onboarding_defs,
           "ops": ops_defs}


def inventory(definitions: dg.Definitions) -> dict[str, list[str]]:
    repo = definitions.get_repository_def()
    graph = repo.asset_graph
    # Only what the definitions materialize: a domain's upstream assets from another
    # domain appear in its graph as external keys it does not own.
    keys = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable}
    return {
        "assets": sorted(k.to_user_string() for k in keys),
        "checks": sorted(k.to_user_string() for k in graph.asset_check_keys),
        "jobs": sorted(job.name for job in repo.get_all_jobs()),
        "sensors": sorted(sensor.name for sensor in repo.sensor_defs),
        "schedules": sorted(schedule.name for schedule in repo.schedule_defs),
        "resources": sorted(repo.get_top_level_resources()),
        "groups": sorted({graph.get(k).group_name for k in keys}),
    }


def test_the_code_location_holds_exactly_the_expected_definitions() -> None:
    assert inventory(defs) == EXPECTED
    assert defs.executor is dg.in_process_executor  # every run is one process


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_each_domain_loads_by_itself(domain: str) -> None:
    """A domain's own definitions resolve alone, on the shared resources and executor."""
    own = inventory(DOMAINS[domain])
    assert own["resources"] == EXPECTED["resources"]
    assert set(own["sensors"]) <= set(EXPECTED["sensors"]) and own["sensors"]
    assert DOMAINS[domain].executor is dg.in_process_executor


def test_the_domains_partition_the_code_location() -> None:
    """Every asset, check and sensor belongs to exactly one domain."""
    owned = {domain: inventory(d) for domain, d in DOMAINS.items()}
    for kind in ("assets", "checks", "sensors"):
        listed = [name for inv in owned.values() for name in inv[kind]]
        assert sorted(listed) == EXPECTED[kind], kind


@pytest.mark.parametrize("module", ["accrue_pipelines.definitions",
                                    *(f"accrue_pipelines.{d}.definitions" for d in DOMAINS)])
def test_each_definitions_module_holds_one_definitions_object(module: str) -> None:
    """Dagster refuses to load a module with two Definitions at module scope (one imported
    from a domain would make two), so each module imports the others as modules."""
    loaded = importlib.import_module(module)
    found = [name for name, value in vars(loaded).items() if isinstance(value, dg.Definitions)]
    assert found == ["defs"]
