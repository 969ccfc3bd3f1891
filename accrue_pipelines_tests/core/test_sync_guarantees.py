"""Sync guarantees beyond the happy path: deletes, quota, drift, quarantine (F2, F3, F4)."""

from __future__ import annotations

import pytest
import requests

from accrue.sync import sync_object
from connectors.base import LiveIds, Quarantine
from connectors.registry import create_connector
from connectors.salesforce.mapping import map_record


def _connector(sandbox, **config):
    return create_connector(
        "salesforce",
        {
            "username": sandbox.username,
            "password": sandbox.password,
            "security_token": sandbox.security_token,
        },
        {"sandbox_url": sandbox.url, **config},
    )


def _admin(sandbox, path, payload=None):
    response = requests.post(f"{sandbox.url}/_sandbox/{path}", json=payload or {}, timeout=10)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


def _ids(sf_client, soql):
    return {r["Id"] for r in sf_client.query_all(soql)["records"]}


def test_purged_deletes_are_caught_by_id_reconciliation(
    warehouse, tenant_id, sf_sandbox, sf_client
):
    """Deletes flagged even when the recycle bin was emptied before we looked."""
    with _connector(sf_sandbox) as connector:
        sync_object(warehouse, connector, tenant_id, "contact")
        victim = sorted(_ids(sf_client, "SELECT Id FROM Contact"))[0]
        sf_client.Contact.delete(victim)
        _admin(sf_sandbox, "purge")  # gone from queryAll and from the delete log
        result = sync_object(warehouse, connector, tenant_id, "contact")
    assert result.reconciled
    assert victim not in warehouse.live_ids(tenant_id, "contact")
    assert warehouse.live_ids(tenant_id, "contact") == _ids(sf_client, "SELECT Id FROM Contact")
    assert warehouse.count(tenant_id, "contact", include_deleted=True) > warehouse.count(
        tenant_id, "contact"
    )  # flagged, never physically removed


def test_hard_delete_found_by_scheduled_reconciliation(warehouse, tenant_id, sf_sandbox, sf_client):
    with _connector(sf_sandbox) as connector:
        sync_object(warehouse, connector, tenant_id, "account")
        victim = sorted(_ids(sf_client, "SELECT Id FROM Account"))[-1]
        _admin(sf_sandbox, "hard_delete", {"ids": [victim]})
        plain = sync_object(warehouse, connector, tenant_id, "account")
        assert not plain.reconciled and victim in warehouse.live_ids(tenant_id, "account")
        nightly = sync_object(warehouse, connector, tenant_id, "account", reconcile=True)
    assert nightly.reconciled and nightly.deleted >= 1
    assert victim not in warehouse.live_ids(tenant_id, "account")


@pytest.mark.parametrize(("object_name", "sobject", "soql"), [
    ("lead", "Lead", "SELECT Id FROM Lead WHERE IsConverted = false"),
    ("activity", "Event", "SELECT Id FROM Event"),  # read from Task and Event
])
def test_undelete_restores_the_row(warehouse, tenant_id, sf_sandbox, sf_client, object_name,
                                   sobject, soql):
    from connectors.salesforce.transport import soap_undelete

    with _connector(sf_sandbox) as connector:
        sync_object(warehouse, connector, tenant_id, object_name)
        record = sorted(_ids(sf_client, soql))[0]
        getattr(sf_client, sobject).delete(record)
        sync_object(warehouse, connector, tenant_id, object_name)
        assert record not in warehouse.live_ids(tenant_id, object_name)
        soap_undelete(sf_client, [record])
        sync_object(warehouse, connector, tenant_id, object_name)
    assert record in warehouse.live_ids(tenant_id, object_name)
    versions = warehouse.history(tenant_id, object_name, record)
    assert [v["is_deleted"] for v in versions][-2:] == [True, False]


def test_quota_stop_keeps_checkpoint_and_is_not_complete(
    warehouse, tenant_id, sf_sandbox, sf_client
):
    """A sync stopped at 90% of the daily quota keeps its progress and says it is partial."""
    source = _ids(sf_client, "SELECT Id FROM OpportunityLineItem")
    limits = sf_client.limits()["DailyApiRequests"]
    used = limits["Max"] - limits["Remaining"]
    # 90% of this limit is reached a few pages into the object (describe, 2 queries, pages).
    _admin(sf_sandbox, "config", {"api_daily_limit": int((used + 4) / 0.9) + 1})
    with _connector(sf_sandbox, window_days=36500) as connector:
        stopped = sync_object(warehouse, connector, tenant_id, "opportunity_line")
    assert not stopped.complete and "quota" in (stopped.stop_reason or "")
    assert warehouse.get_state(tenant_id, "opportunity_line") is not None
    assert 0 < warehouse.count(tenant_id, "opportunity_line") < len(source)
    assert warehouse.recent_runs(tenant_id, limit=1)[0]["status"] == "stopped"

    _admin(sf_sandbox, "config", {"api_daily_limit": 1_000_000})
    with _connector(sf_sandbox, window_days=36500) as connector:
        resumed = sync_object(warehouse, connector, tenant_id, "opportunity_line")
    assert resumed.complete
    assert warehouse.live_ids(tenant_id, "opportunity_line") == source
    assert resumed.records_read < len(source)  # resumed from the checkpoint, not re-read


def test_new_custom_field_is_reported_and_removed_field_does_not_break(
    warehouse, tenant_id, sf_sandbox, sf_client
):
    with _connector(sf_sandbox) as connector:
        sync_object(warehouse, connector, tenant_id, "opportunity")
    _admin(
        sf_sandbox,
        "fields",
        {
            "sobject": "Opportunity",
            "name": "Region__c",
            "type": "string",
            "label": "Region",
            "length": 80,
        },
    )
    opp = sorted(_ids(sf_client, "SELECT Id FROM Opportunity"))[0]
    sf_client.Opportunity.update(opp, {"Region__c": "EMEA"})
    with _connector(sf_sandbox) as connector:
        added = sync_object(warehouse, connector, tenant_id, "opportunity")
    assert added.new_fields == ["Region__c"]
    assert warehouse.history(tenant_id, "opportunity", opp)[-1]["raw"]["Region__c"] == "EMEA"

    requests.delete(
        f"{sf_sandbox.url}/_sandbox/fields/Opportunity/Region__c", timeout=10
    ).raise_for_status()
    with _connector(sf_sandbox) as connector:
        removed = sync_object(warehouse, connector, tenant_id, "opportunity")
    assert removed.complete and removed.removed_fields == ["Region__c"]


def test_unmappable_record_is_quarantined_then_retried_after_a_fix(
    warehouse, tenant_id, sf_sandbox, sf_client, monkeypatch
):
    """A record our mapping cannot handle waits in quarantine, is never lost, and lands later."""
    import connectors.salesforce.connector as adapter

    victim = sorted(_ids(sf_client, "SELECT Id FROM Product2"))[0]
    real = adapter.map_record

    def buggy(object_name, record):
        if record.get("Id") == victim:
            return Quarantine(victim, None, dict(record), "product.unit_cost: a mapping bug")
        return real(object_name, record)

    monkeypatch.setattr(adapter, "map_record", buggy)
    with _connector(sf_sandbox) as connector:
        first = sync_object(warehouse, connector, tenant_id, "product")
    assert first.quarantined == 1 and warehouse.quarantine_count(tenant_id, "product") == 1
    assert victim not in warehouse.live_ids(tenant_id, "product")
    assert first.state is not None  # the sync went on past the bad record

    monkeypatch.setattr(adapter, "map_record", real)  # the fix ships
    with _connector(sf_sandbox) as connector:
        second = sync_object(warehouse, connector, tenant_id, "product")
    assert second.quarantine_resolved == 1
    assert warehouse.quarantine_count(tenant_id, "product") == 0
    assert victim in warehouse.live_ids(tenant_id, "product")


def test_bad_values_from_the_crm_are_quarantined_not_fatal():
    record = {
        "Id": "006000000000001AAA",
        "SystemModstamp": "2024-01-01T00:00:00.000+0000",
        "CloseDate": "not-a-date",
        "Amount": 10.0,
    }
    mapped = map_record("opportunity", record)
    assert isinstance(mapped, Quarantine)
    assert "close_date" in mapped.reason and mapped.raw["CloseDate"] == "not-a-date"
    no_stamp = map_record("opportunity", {"Id": "006000000000002AAA"})
    assert isinstance(no_stamp, Quarantine) and no_stamp.modified_at is None


def test_live_ids_lists_every_live_record(sf_sandbox, sf_client):
    with _connector(sf_sandbox) as connector:
        snapshot = connector.live_ids("opportunity")
    assert isinstance(snapshot, LiveIds)
    assert set(snapshot.source_ids) == _ids(sf_client, "SELECT Id FROM Opportunity")
