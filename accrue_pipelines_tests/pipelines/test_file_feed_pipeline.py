"""The "file" feed (accrue.file_import.feed) in the pipelines: the sensor asks for a run when
an upload is queued, a Dagster run of the sync asset imports it (sync_run rows, crm_* rows,
the upload's figures), and an import interrupted between pages resumes without duplicates."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue import tenants
from accrue.file_import import FileMapping, propose, uploads
from accrue.file_import import feed as file_feed
from accrue.file_import.feed import FILE_CRM_TYPE, FileConnector
from accrue.schema import crm_change_log, file_upload_chunk, object_table, sync_run
from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines.constants import MATCHES_CHECK, sync_asset_key
from accrue_pipelines.platform import run_tags
from accrue_pipelines.platform.partitions import TENANT_PARTITIONS_NAME
from accrue_pipelines.platform.resources import pipeline_resources
from accrue_pipelines.sync import sensors
from accrue_pipelines.sync.assets import sync_assets

EXPORTS = Path(__file__).parents[1] / "file_import_exports"


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def _queue(engine: Engine, tenant_id: str, path: Path, *, mode: str = "changes") -> int:
    """What the concierge does: propose, store the draft, confirm it."""
    proposal = propose(Warehouse(engine), tenant_id, "opportunity", path)
    assert proposal.mapping is not None
    upload = uploads.store(engine, tenant_id, "opportunity", path, filename=path.name,
                           member=proposal.file.member, header_signature=proposal.signature,
                           proposal=proposal.as_json(), uploaded_by=None)
    assert uploads.confirm(engine, tenant_id, upload.id, proposal.mapping, mode)
    return upload.id


def _runs(engine: Engine, tenant_id: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [(r.object_name, r.status) for r in conn.execute(
            sa.select(sync_run.c.object_name, sync_run.c.status)
            .where(sync_run.c.tenant_id == tenant_id).order_by(sync_run.c.id))]


def test_the_sensor_asks_for_a_run_only_once_an_upload_is_queued(
        instance, private_engine, tmp_path) -> None:
    resources = pipeline_resources(private_engine.url.render_as_string(False))
    tenants.add_tenant(private_engine, "filed", "Filed", FILE_CRM_TYPE)
    tenants.set_status(private_engine, "filed", "active")
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, ["filed"])

    def tick():
        with dg.build_sensor_context(instance=instance, resources=resources) as ctx:
            return sensors.tenant_sync_sensor(ctx)

    assert not tick().run_requests  # nothing uploaded
    path = EXPORTS / "hubspot_deals.csv"
    proposal = propose(Warehouse(private_engine), "filed", "opportunity", path)
    draft = uploads.store(private_engine, "filed", "opportunity", path, filename=path.name,
                          member=None, header_signature=proposal.signature,
                          proposal=proposal.as_json(), uploaded_by=None)
    assert not tick().run_requests  # a draft waits for its admin, not for the pipelines
    assert proposal.mapping is not None
    uploads.confirm(private_engine, "filed", draft.id, proposal.mapping, "changes")
    [request] = tick().run_requests
    assert request.partition_key == "filed"
    assert request.tags[run_tags.TRIGGER] == "received"
    assert request.tags[run_tags.CRM] == FILE_CRM_TYPE


def test_an_upload_of_an_object_the_sync_does_not_read_is_not_pending(engine, tenant_id):
    """Activities not switched on are never read: such an upload would ask for a run at
    every tick, and wait for ever."""
    tenants.add_tenant(engine, tenant_id, "Filed", FILE_CRM_TYPE)
    path = EXPORTS / "hubspot_deals.csv"
    proposal = propose(Warehouse(engine), tenant_id, "opportunity", path)
    assert proposal.mapping is not None
    upload = uploads.store(engine, tenant_id, "activity", path, filename=path.name,
                           member=None, header_signature=proposal.signature,
                           proposal=proposal.as_json(), uploaded_by=None)
    mapping = FileMapping("activity", proposal.mapping.id_column, {})
    assert uploads.confirm(engine, tenant_id, upload.id, mapping, "changes")
    assert not file_feed.FILE_FEED.pending(engine, tenant_id)
    tenants.set_optional_objects(engine, tenant_id, ["activity"])
    assert file_feed.FILE_FEED.pending(engine, tenant_id)


def test_a_queued_upload_is_imported_by_a_dagster_run_of_the_sync_asset(
        instance, database_url, engine, tenant_id, make_tenant_id) -> None:
    tenants.add_tenant(engine, tenant_id, "Filed", FILE_CRM_TYPE)
    other = make_tenant_id()
    tenants.add_tenant(engine, other, "Other", FILE_CRM_TYPE)
    instance.add_dynamic_partitions(TENANT_PARTITIONS_NAME, [tenant_id, other])
    upload_id = _queue(engine, tenant_id, EXPORTS / "salesforce_report.csv")
    other_id = _queue(engine, other, EXPORTS / "hubspot_deals.csv")
    assert file_feed.FILE_FEED.pending(engine, tenant_id)
    result = dg.materialize(sync_assets, instance=instance, partition_key=tenant_id,
                            resources=pipeline_resources(database_url))
    assert result.success
    store = Warehouse(engine)
    assert store.count(tenant_id, "opportunity") == 4
    assert store.quarantine_count(tenant_id, "opportunity") == 2
    done = uploads.get(engine, tenant_id, upload_id)
    assert done is not None and done.status == "done"
    assert dict(done.counts or {}) == {"rows": 6, "imported": 4, "unchanged": 0,
                                       "quarantined": 2, "deleted": 0}
    assert [line for line, _ in done.errors] == [6, 7]
    assert not file_feed.FILE_FEED.pending(engine, tenant_id)
    # One sync run, for the object uploaded; the others are not offered by this feed.
    assert _runs(engine, tenant_id) == [("opportunity", "succeeded")]
    materialized = {e.asset_key: e.event_specific_data.materialization
                    for e in result.get_asset_materialization_events()}
    assert materialized[sync_asset_key("opportunity")].metadata["records_read"].value == 6
    matches = [c for c in result.get_asset_check_evaluations()
               if c.asset_key == sync_asset_key("opportunity")
               and c.check_name == MATCHES_CHECK]
    # No id twice, the live count is the file's; only the accounts were not uploaded.
    assert [c.description for c in matches] == [
        f"{tenant_id}: 4 account_id references point to no row"]
    # Another tenant's upload is not touched by this tenant's run.
    assert store.count(other, "opportunity") == 0
    assert uploads.get(engine, other, other_id).status == "queued"  # type: ignore[union-attr]


def test_an_import_interrupted_between_pages_resumes_without_duplicates(
        engine, tenant_id, tmp_path, monkeypatch) -> None:
    tenants.add_tenant(engine, tenant_id, "Filed", FILE_CRM_TYPE)
    path = tmp_path / "deals.csv"
    path.write_text("Id,Amount,Close Date\n" + "".join(
        f"D{i},{i}.50,2024-01-{1 + i % 28:02d}\n" for i in range(25)))
    upload_id = _queue(engine, tenant_id, path, mode="snapshot")
    monkeypatch.setattr(file_feed, "FEED_PAGE_ROWS", 10)
    real_apply = Warehouse.apply
    calls = {"n": 0}

    def dying_apply(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed between pages")
        return real_apply(self, *args, **kwargs)

    monkeypatch.setattr(Warehouse, "apply", dying_apply)
    store = Warehouse(engine)
    with pytest.raises(RuntimeError):
        sync_object(store, FileConnector(engine, tenant_id), tenant_id, "opportunity")
    assert store.count(tenant_id, "opportunity") == 20  # two pages committed
    assert uploads.get(engine, tenant_id, upload_id).status == "importing"  # type: ignore[union-attr]
    monkeypatch.setattr(Warehouse, "apply", real_apply)
    resumed = sync_object(store, FileConnector(engine, tenant_id), tenant_id, "opportunity")
    assert resumed.records_read == 5  # after the last committed line only
    assert store.count(tenant_id, "opportunity") == 25
    with engine.connect() as conn:
        versions = conn.execute(sa.select(sa.func.count()).select_from(crm_change_log).where(
            crm_change_log.c.tenant_id == tenant_id)).scalar_one()
        deleted = conn.execute(sa.select(sa.func.count()).select_from(
            object_table("opportunity")).where(
            object_table("opportunity").c.tenant_id == tenant_id,
            object_table("opportunity").c.is_deleted)).scalar_one()
    assert versions == 25 and deleted == 0  # each row once; the snapshot deleted nothing
    done = uploads.get(engine, tenant_id, upload_id)
    assert done is not None and done.status == "done"
    assert (done.counts or {})["rows"] == 25 and (done.counts or {})["imported"] == 25
    assert _runs(engine, tenant_id) == [("opportunity", "failed"), ("opportunity", "succeeded")]


def test_an_upload_whose_bytes_are_damaged_fails_alone(engine, tenant_id) -> None:
    tenants.add_tenant(engine, tenant_id, "Filed", FILE_CRM_TYPE)
    damaged = _queue(engine, tenant_id, EXPORTS / "hubspot_deals.csv")
    fine = _queue(engine, tenant_id, EXPORTS / "pipedrive_deals.csv")
    with engine.begin() as conn:
        conn.execute(sa.update(file_upload_chunk).where(file_upload_chunk.c.upload_id == damaged)
                     .values(data=b"Record ID\n1\n"))
    result = sync_object(Warehouse(engine), FileConnector(engine, tenant_id), tenant_id,
                         "opportunity")
    assert result.complete
    failed = uploads.get(engine, tenant_id, damaged)
    assert failed is not None and failed.status == "failed"
    assert "do not match their SHA-256" in (failed.error or "")
    assert uploads.get(engine, tenant_id, fine).status == "done"  # type: ignore[union-attr]
    assert Warehouse(engine).count(tenant_id, "opportunity") == 4
