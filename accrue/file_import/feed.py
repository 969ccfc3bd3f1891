"""The "file" feed (accrue.sources): uploaded exports imported by the pipelines' sync.

A tenant whose `crm_type` is FILE_CRM_TYPE is fed by the files its admin uploads in the
concierge (accrue.file_import.uploads). The sync asset opens `FileConnector` as it opens a
CRM's, and the sync engine commits what it yields: so an import gets a sync_run row, the
status page, the checks and the analytics like any sync, and `pending` wakes the sync
sensor when an upload is queued.

`read` imports the object's open uploads oldest first with `importer.read_file`, the same
reading as `accrue import`: pages of rows, each closed by a checkpoint whose state holds
the import's progress, so an interrupted import resumes after its last committed page;
with a snapshot upload the last page carries the file's `LiveIds`. An upload's figures are
kept in the checkpointed state, and written to the upload once its last page is committed
(the engine commits a checkpoint before asking for what follows it).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue import tenants
from accrue.file_import import uploads
from accrue.file_import.importer import ImportResult, read_file
from accrue.file_import.proposal import choose_file, remember_mapping
from accrue.file_import.reading import FileImportError
from accrue.schema import object_table
from accrue.warehouse import Warehouse
from connectors.base import (
    Change,
    Checkpoint,
    CheckResult,
    Connector,
    ObjectInfo,
    Quarantine,
    Upsert,
)

FILE_CRM_TYPE = "file"
# Half the sync engine's batch (accrue.sync.sync_object, 2,000): a page never reaches it,
# so each page commits with its checkpoint in one transaction.
FEED_PAGE_ROWS = 1000


class FileConnector(Connector):
    """A tenant's uploaded files, read as a connector. Holds no secret."""

    crm_type = FILE_CRM_TYPE
    reads_warehouse = True  # settles its input by what the warehouse committed

    def __init__(self, engine: Engine, tenant_id: str) -> None:
        self.engine = engine
        self.tenant_id = tenant_id

    def check(self) -> CheckResult:
        return CheckResult(True, "uploaded files are kept in Accrue's warehouse")

    def objects(self) -> list[ObjectInfo]:
        """The objects the tenant has uploaded files for (others are not offered)."""
        return [ObjectInfo(name, "file upload")
                for name in uploads.uploaded_objects(self.engine, self.tenant_id)]

    def count(self, object_name: str) -> int:
        """The live rows the files made: a file feed has no source to count apart from them."""
        return Warehouse(self.engine).count(self.tenant_id, object_name)

    def map_record(self, object_name: str, record: Mapping[str, Any]) -> Upsert | Quarantine:
        """A quarantined file row is fixed in the file: it stays until a corrected upload."""
        return Quarantine(None, None, record, "fix the row in the export and upload it again")

    def read(
        self, object_name: str, state: Mapping[str, Any] | None, *, reconcile: bool = False
    ) -> Iterator[Change]:
        """Every open upload of the object, oldest first, page by page with checkpoints.
        A file that cannot be read fails its upload (with the reason), not the sync."""
        while (upload := uploads.next_open(self.engine, self.tenant_id, object_name)):
            uploads.started(self.engine, self.tenant_id, upload.id)
            result = ImportResult(self.tenant_id, object_name, upload.filename)
            try:
                mapping = upload.file_mapping()
                with uploads.materialized(self.engine, upload) as path:
                    source = choose_file(path, object_name, upload.member)
                    for change in read_file(
                            self.engine, self.tenant_id, source, mapping, result,
                            snapshot=upload.snapshot, state=state,
                            run_key={"upload": upload.id}, page_rows=FEED_PAGE_ROWS):
                        if isinstance(change, Checkpoint):
                            state = change.state
                        yield change
            except (FileImportError, ValueError) as exc:
                uploads.finish(self.engine, self.tenant_id, upload.id, counts=_counts(result),
                               errors=result.errors, error=str(exc))
                continue
            counts = _counts(result)
            counts["deleted"] = self._deleted(object_name, result.as_of) if upload.snapshot else 0
            uploads.finish(self.engine, self.tenant_id, upload.id, counts=counts,
                           errors=result.errors)
            remember_mapping(self.engine, self.tenant_id, result.headers, mapping)

    def _deleted(self, object_name: str, as_of: datetime | None) -> int:
        """Rows this snapshot marked deleted: the warehouse dates them with its `as_of`."""
        if as_of is None:
            return 0
        table = object_table(object_name)
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(
                table.c.tenant_id == self.tenant_id, table.c.is_deleted,
                table.c.deleted_at == as_of)).scalar_one())


def _counts(result: ImportResult) -> dict[str, Any]:
    return {"rows": result.rows, "imported": result.changed, "unchanged": result.unchanged,
            "quarantined": result.read_quarantined}


class FileFeed:
    """The feed accrue.sources registers under FILE_CRM_TYPE."""

    def open(self, engine: Engine, tenant_id: str) -> Connector:
        return FileConnector(engine, tenant_id)

    def pending(self, engine: Engine, tenant_id: str) -> bool:
        """An upload waits for an object the tenant's sync reads (one the admin has not
        switched on is never read: it would otherwise ask for a run at every tick)."""
        waiting = uploads.open_objects(engine, tenant_id)
        if not waiting:
            return False
        tenant = tenants.get_tenant(engine, tenant_id)
        return tenant is not None and any(tenant.syncs(name) for name in waiting)


FILE_FEED = FileFeed()
