"""The sync engine: page-by-page commits, resumable after a crash (F2, F4)."""

from __future__ import annotations

import pytest

from accrue.sync import sync_object
from connectors.base import Checkpoint
from connectors.registry import create_connector


def _connector(sandbox, **config):
    return create_connector(
        "salesforce",
        {"username": sandbox.username, "password": sandbox.password,
         "security_token": sandbox.security_token},
        {"sandbox_url": sandbox.url, **config},
    )


def _source_ids(sf_client, sobject):
    rows = sf_client.query_all(f"SELECT Id FROM {sobject}")["records"]
    return {r["Id"] for r in rows}


class Crash(Exception):
    pass


class CrashAfterCheckpoints:
    """Wraps a connector and dies after its k-th checkpoint, as a killed process would."""

    def __init__(self, connector, k):
        self.connector, self.k, self.seen = connector, k, []

    def map_record(self, object_name, record):
        return self.connector.map_record(object_name, record)

    def read(self, object_name, state, *, reconcile=False):
        for change in self.connector.read(object_name, state, reconcile=reconcile):
            yield change
            if isinstance(change, Checkpoint):
                self.seen.append(change.state)
                if len(self.seen) == self.k:
                    raise Crash(f"killed after checkpoint {self.k}")


def test_full_sync_lands_exactly_the_source_rows(warehouse, tenant_id, sf_sandbox, sf_client):
    """F2: one row per CRM id; live rows equal the CRM's live records."""
    with _connector(sf_sandbox) as connector:
        result = sync_object(warehouse, connector, tenant_id, "opportunity")
    assert result.records_read == result.upserted > 0
    assert warehouse.live_ids(tenant_id, "opportunity") == _source_ids(sf_client, "Opportunity")
    assert warehouse.duplicate_keys(tenant_id, "opportunity") == 0
    assert warehouse.get_state(tenant_id, "opportunity")["cursor"] == result.state["cursor"]


def test_second_sync_changes_nothing_and_duplicates_nothing(warehouse, tenant_id, sf_sandbox):
    """F2: replaying the lookback window twice leaves the same rows."""
    with _connector(sf_sandbox) as connector:
        sync_object(warehouse, connector, tenant_id, "account")
        before = warehouse.count(tenant_id, "account", include_deleted=True)
        sync_object(warehouse, connector, tenant_id, "account")
    assert warehouse.count(tenant_id, "account", include_deleted=True) == before
    assert warehouse.duplicate_keys(tenant_id, "account") == 0


@pytest.mark.parametrize(("object_name", "sobjects", "k"), [
    ("opportunity_line", ("OpportunityLineItem",), 1),
    ("opportunity_line", ("OpportunityLineItem",), 3),
    # Read from Task, then Event (6 and 2 pages of the fixture's 50): killed in each part.
    ("activity", ("Task", "Event"), 2),
    ("activity", ("Task", "Event"), 7),
])
def test_crash_after_page_k_keeps_cursor_at_page_k_and_rerun_completes(
    warehouse, tenant_id, sf_sandbox, sf_client, object_name, sobjects, k
):
    """F4: a sync killed after page k resumes from page k's checkpoint, losing nothing."""
    source = set().union(*(_source_ids(sf_client, sobject) for sobject in sobjects))
    # One window over the whole history, so every checkpoint is a page boundary.
    with _connector(sf_sandbox, window_days=36500) as connector:
        crashing = CrashAfterCheckpoints(connector, k)
        with pytest.raises(Crash):
            sync_object(warehouse, crashing, tenant_id, object_name)
        assert warehouse.get_state(tenant_id, object_name) == crashing.seen[k - 1]
        partial = warehouse.count(tenant_id, object_name, include_deleted=True)
        assert 0 < partial < len(source)
        result = sync_object(warehouse, connector, tenant_id, object_name)
    assert warehouse.live_ids(tenant_id, object_name) == source
    assert warehouse.duplicate_keys(tenant_id, object_name) == 0
    # Resumed, not restarted: the rerun read fewer records than a full read.
    assert result.records_read < len(source)
    runs = warehouse.recent_runs(tenant_id, limit=5)
    assert [r["status"] for r in runs][:2] == ["succeeded", "failed"]


def test_deletes_and_updates_flow_through(warehouse, tenant_id, sf_sandbox, sf_client):
    with _connector(sf_sandbox) as connector:
        sync_object(warehouse, connector, tenant_id, "lead")
        lead_ids = sorted(_source_ids(sf_client, "Lead"))
        open_leads = sf_client.query("SELECT Id FROM Lead WHERE IsConverted = false LIMIT 2")
        deleted_id, updated_id = (r["Id"] for r in open_leads["records"])
        sf_client.Lead.delete(deleted_id)
        sf_client.Lead.update(updated_id, {"Status": "Working - Contacted"})
        sync_object(warehouse, connector, tenant_id, "lead")
    assert deleted_id not in warehouse.live_ids(tenant_id, "lead")
    assert warehouse.count(tenant_id, "lead") == len(lead_ids) - 1
    assert warehouse.count(tenant_id, "lead", include_deleted=True) == len(lead_ids)
