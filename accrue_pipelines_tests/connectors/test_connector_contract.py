"""The contract every registered CRM passes, on its own sandbox, with no code of its own here.

Parametrized over the registry: a CRM package that registers a spec with a sandbox
harness (`connectors/sandbox_kit/harness.py`) runs every case below, against SQLite and
PostgreSQL. The cases are the promises of `connectors/base.py` and docs/sync-guarantees.md:
check tells good credentials from bad without raising; every offered object is readable
and counted; a first read lands exactly the CRM's live records; changes made through the
CRM's own client (create, update, delete) arrive in the next incremental read; small
pages neither duplicate nor drop; a sync killed after a checkpoint resumes to the same
result; a value that cannot be stored exactly is quarantined with its reason.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.core.test_sync_engine import Crash, CrashAfterCheckpoints
from connectors import registry
from connectors.base import Checkpoint, Connector, Upsert
from connectors.common_model import COMMON_OBJECTS
from connectors.sandbox_kit.harness import RunningCrmSandbox
from connectors.spec import ConnectorSpec


def connect(crm: ConnectorSpec, crm_org: RunningCrmSandbox) -> Connector:
    secrets, config = crm_org.connection()
    return registry.create_connector(crm.key, secrets, config)


def sync_all(warehouse: Warehouse, connector: Connector, tenant_id: str,
             objects: list[str]) -> None:
    for name in objects:
        result = sync_object(warehouse, connector, tenant_id, name)
        assert result.complete, (name, result.stop_reason)


def read_all(connector: Connector, name: str, state: dict[str, Any] | None = None,
             ) -> tuple[list[Any], dict[str, Any] | None]:
    changes = list(connector.read(name, state))
    checkpoints = [c for c in changes if isinstance(c, Checkpoint)]
    return changes, (dict(checkpoints[-1].state) if checkpoints else state)


def test_spec_is_complete_and_consistent(crm: ConnectorSpec) -> None:
    """What the concierge and the CLI build from: every method's fields exist, secrets say
    where they come from, objects are common objects, hosts are names not addresses."""
    names = {f.name for f in crm.fields}
    assert crm.auth_methods and crm.allowed_hosts and crm.objects
    for method in crm.auth_methods:
        assert set(method.fields) <= names, method.key
        assert (method.oauth is not None) == (method.kind == "oauth2_code"), method.key
    assert set(crm.objects) <= set(COMMON_OBJECTS)
    for setup in crm.fields:
        assert setup.label and setup.help, setup.name
        if setup.secret:
            assert setup.env and setup.env.startswith("ACCRUE_"), setup.name
    for host in crm.allowed_hosts:
        assert crm.allows_host(host.replace("*", "acme")), host
    assert not crm.allows_host("169.254.169.254") and not crm.allows_host("evil.example")


def test_check_tells_good_credentials_from_bad_without_raising(
    crm: ConnectorSpec, crm_org: RunningCrmSandbox
) -> None:
    with connect(crm, crm_org) as connector:
        good = connector.check()
    secrets, config = crm_org.bad_connection()
    with registry.create_connector(crm.key, secrets, config) as connector:
        bad = connector.check()
    assert good.ok, good.message
    assert not bad.ok and bad.message


def test_every_object_is_offered_counted_and_read_whole(
    crm: ConnectorSpec, crm_org: RunningCrmSandbox
) -> None:
    """A first read from no state yields every live record, mapped, then a checkpoint
    whose state survives JSON (it is stored as JSON). A record may come twice only as the
    same version: a connector whose windows overlap by a lookback (HubSpot's search after
    its list) re-reads what was stamped just before the read began, which the warehouse's
    idempotent upsert absorbs."""
    with connect(crm, crm_org) as connector:
        offered = [info.name for info in connector.objects()]
        assert set(offered) <= set(crm.objects) and "opportunity" in offered
        for name in offered:
            truth = crm_org.live_count(name)
            assert connector.count(name) == truth, name
            changes, state = read_all(connector, name)
            upserts = [c for c in changes if isinstance(c, Upsert) and not c.is_deleted]
            versions: dict[str, Upsert] = {}
            for upsert in upserts:
                first = versions.setdefault(upsert.source_id, upsert)
                assert (upsert.modified_at, upsert.fields) == (first.modified_at,
                                                               first.fields), name
            assert len(versions) == truth, name
            assert isinstance(changes[-1], Checkpoint), name
            assert json.loads(json.dumps(state)) == state
            for upsert in upserts:
                assert set(upsert.fields) <= {c.name for c in COMMON_OBJECTS[name]}, name
                assert upsert.modified_at.tzinfo is not None, name


def test_first_sync_lands_exactly_the_live_records(
    crm: ConnectorSpec, crm_org: RunningCrmSandbox, warehouse: Warehouse, tenant_id: str
) -> None:
    with connect(crm, crm_org) as connector:
        objects = [info.name for info in connector.objects()]
        sync_all(warehouse, connector, tenant_id, objects)
    for name in objects:
        assert warehouse.count(tenant_id, name) == crm_org.live_count(name), name
        assert warehouse.duplicate_keys(tenant_id, name) == 0, name
    assert warehouse.quarantine_count(tenant_id) == 0


def test_changes_through_the_crms_own_client_arrive_incrementally(
    crm: ConnectorSpec, crm_org: RunningCrmSandbox, warehouse: Warehouse, tenant_id: str
) -> None:
    """Create, update and delete with the CRM's real client; the next incremental sync
    (from the saved state) brings exactly those changes, and nothing is duplicated."""
    objects = ["account", "opportunity"]
    with connect(crm, crm_org) as connector:
        sync_all(warehouse, connector, tenant_id, objects)
    before = {name: warehouse.count(tenant_id, name) for name in objects}
    account_id = sorted(warehouse.live_ids(tenant_id, "account"))[0]
    victim, changed = sorted(warehouse.live_ids(tenant_id, "opportunity"))[:2]
    stage = warehouse.as_of(tenant_id, "opportunity", _far_future())[changed]["fields"]["stage"]
    writer = crm_org.writer()
    new_account = writer.create("account", {"name": "Contract Test Holdings"})
    new_deal = writer.create("opportunity", {
        "name": "Contract test deal", "account_id": new_account, "amount": 12345.5,
        "stage": stage, "close_date": date(2031, 3, 14)})
    # The name: an amount may be the CRM's own roll-up of the deal's lines (Salesforce).
    writer.update("opportunity", changed, {"name": "Renamed in the CRM"})
    writer.delete("opportunity", victim)
    with connect(crm, crm_org) as connector:
        sync_all(warehouse, connector, tenant_id, objects)
    live = warehouse.live_ids(tenant_id, "opportunity")
    assert new_deal in live and changed in live and victim not in live
    assert new_account in warehouse.live_ids(tenant_id, "account")
    assert account_id in warehouse.live_ids(tenant_id, "account")
    assert warehouse.count(tenant_id, "opportunity") == before["opportunity"] == (
        crm_org.live_count("opportunity"))  # one created, one deleted
    assert warehouse.count(tenant_id, "account") == before["account"] + 1
    assert warehouse.duplicate_keys(tenant_id, "opportunity") == 0
    now = warehouse.as_of(tenant_id, "opportunity", _far_future())
    assert now[new_deal]["fields"]["amount"] == 12345.5
    assert now[new_deal]["fields"]["account_id"] == new_account
    assert now[changed]["fields"]["name"] == "Renamed in the CRM"


def _far_future() -> Any:
    from datetime import UTC, datetime

    return datetime(2999, 1, 1, tzinfo=UTC)


def test_an_incremental_read_without_changes_brings_nothing_new(
    crm: ConnectorSpec, crm_org: RunningCrmSandbox, warehouse: Warehouse, tenant_id: str
) -> None:
    """Re-reading the lookback window is harmless: counts and versions stay put."""
    with connect(crm, crm_org) as connector:
        sync_all(warehouse, connector, tenant_id, ["opportunity"])
        versions = warehouse.change_count(tenant_id, "opportunity")
        sync_all(warehouse, connector, tenant_id, ["opportunity"])
    assert warehouse.change_count(tenant_id, "opportunity") == versions
    assert warehouse.count(tenant_id, "opportunity") == crm_org.live_count("opportunity")


def test_a_sync_killed_after_a_checkpoint_resumes_to_the_same_result(
    crm: ConnectorSpec, crm_org: RunningCrmSandbox, warehouse: Warehouse, tenant_id: str
) -> None:
    with connect(crm, crm_org) as connector:
        dying = CrashAfterCheckpoints(connector, 2)
        with pytest.raises(Crash):
            sync_object(warehouse, dying, tenant_id, "opportunity")  # type: ignore[arg-type]
        assert warehouse.get_state(tenant_id, "opportunity") == dying.seen[-1]
        sync_all(warehouse, connector, tenant_id, ["opportunity"])
    assert warehouse.count(tenant_id, "opportunity") == crm_org.live_count("opportunity")
    assert warehouse.duplicate_keys(tenant_id, "opportunity") == 0


def test_a_value_that_cannot_be_stored_exactly_is_quarantined_with_its_reason(
    crm: ConnectorSpec, crm_org: RunningCrmSandbox, warehouse: Warehouse, tenant_id: str
) -> None:
    """The CRM hands over a wrong-typed value (its API allowed it, or a bug did): the record
    is kept in quarantine with the reason — by the adapter or by the warehouse's column
    rules — never coerced, never dropped; the other records still land."""
    with connect(crm, crm_org) as connector:
        sync_all(warehouse, connector, tenant_id, ["opportunity"])
        target = sorted(warehouse.live_ids(tenant_id, "opportunity"))[0]
        try:
            crm_org.writer().write_raw("opportunity", target, {"amount": "lots"})
        except NotImplementedError:
            pytest.skip(f"{crm.name}'s sandbox cannot store a wrong-typed value")
        sync_all(warehouse, connector, tenant_id, ["opportunity"])
    held = warehouse.open_quarantine(tenant_id, "opportunity")
    assert [row["source_id"] for row in held] == [target]
    assert "amount" in held[0]["reason"] and "lots" in json.dumps(held[0]["raw"])
    assert warehouse.count(tenant_id, "opportunity") == crm_org.live_count("opportunity")


def test_the_sandbox_counts_the_faults_it_injects(
    crm: ConnectorSpec, crm_org: RunningCrmSandbox
) -> None:
    """The kit's switches mean the same in every sandbox, and each reports what it
    injected (the chaos run shows it): every call a 503, then none once cleared."""
    crm_org.set_faults({"error_rate": 1.0, "error_statuses": [503]})
    secrets, config = crm_org.connection()
    with registry.create_connector(crm.key, secrets, {**config, "max_attempts": 1}) as connector:
        refused = connector.check()
    assert not refused.ok
    assert crm_org.fault_counts().get("http_503", 0) >= 1
    crm_org.set_faults({})
    assert not any(crm_org.fault_counts().values())
    with connect(crm, crm_org) as connector:
        assert connector.check().ok
