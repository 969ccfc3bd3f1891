"""Uploaded exports, kept until the pipelines' file feed imports them: the one module that
writes `file_upload` and `file_upload_chunk`.

The bytes live in the warehouse, in 1 MiB chunks, not on a disk: the concierge and the
pipeline workers run in separate containers that share the database and no volume, and a
row and its bytes commit in one transaction, so an upload is stored whole or not at all
(and goes with the tenant's data when that is deleted). Copies stream both ways: a file is
never held in memory whole.

An upload's life: `draft` (stored, its mapping not yet confirmed) -> `queued` (the admin
confirmed mapping and mode) -> `importing` (the feed read its first page) -> `done` or
`failed`. The feed imports the queued uploads of an object oldest first, one at a time.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.file_import.mapping import FileMapping
from accrue.file_import.reading import FileImportError
from accrue.schema import UPLOAD_MODES, file_upload, file_upload_chunk, utcnow
from accrue.tenants import validate_tenant_id

CHUNK_BYTES = 1024 * 1024
OPEN = ("queued", "importing")  # waiting for, or in, the feed
FILENAME_MAX = 255


@dataclass(frozen=True)
class Upload:
    id: int
    tenant_id: str
    object_name: str
    filename: str
    member: str | None
    size_bytes: int
    sha256: str
    mode: str
    header_signature: str
    mapping: Mapping[str, Any] | None
    proposal: Mapping[str, Any]
    status: str
    counts: Mapping[str, Any] | None
    errors: list[tuple[int, str]]
    error: str | None
    uploaded_by: int | None
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def snapshot(self) -> bool:
        return self.mode == "snapshot"

    def file_mapping(self) -> FileMapping:
        if self.mapping is None:
            raise FileImportError(f"upload {self.id} has no confirmed mapping")
        return FileMapping.from_json(self.mapping)


def _upload(row: Any) -> Upload:
    data = dict(row._mapping)
    data["errors"] = [(int(line), str(why)) for line, why in data.get("errors") or []]
    return Upload(**data)


def check_archive(path: Path, max_unzipped_bytes: int) -> None:
    """Refuse a zip whose members would unpack past the limit (a zip bomb), before any of
    it is read: the reader streams a member only up to its declared size."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        total = sum(info.file_size for info in archive.infolist())
    if total > max_unzipped_bytes:
        raise FileImportError(
            f"the zip unpacks to {total:,} bytes, more than the {max_unzipped_bytes:,} "
            "allowed: upload the one CSV to import, or split the export")


def store(
    engine: Engine, tenant_id: str, object_name: str, path: Path, *, filename: str,
    member: str | None, header_signature: str, proposal: Mapping[str, Any],
    uploaded_by: int | None,
) -> Upload:
    """Keep the file as a draft upload: the row and every chunk in one transaction."""
    validate_tenant_id(tenant_id)
    digest = hashlib.sha256()
    size = 0
    now = utcnow()
    with engine.begin() as conn:
        upload_id = conn.execute(sa.insert(file_upload).values(
            tenant_id=tenant_id, object_name=object_name, filename=filename[:FILENAME_MAX],
            member=member, size_bytes=0, sha256="", mode="changes",
            header_signature=header_signature, proposal=dict(proposal), status="draft",
            uploaded_by=uploaded_by, created_at=now,
        ).returning(file_upload.c.id)).scalar_one()
        with open(path, "rb") as handle:
            seq = 0
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
                conn.execute(sa.insert(file_upload_chunk).values(
                    upload_id=upload_id, seq=seq, tenant_id=tenant_id, data=chunk))
                seq += 1
        conn.execute(sa.update(file_upload).where(file_upload.c.id == upload_id)
                     .values(size_bytes=size, sha256=digest.hexdigest()))
    found = get(engine, tenant_id, upload_id)
    assert found is not None
    return found


def get(engine: Engine, tenant_id: str, upload_id: int) -> Upload | None:
    """The tenant's upload (another tenant's id finds nothing)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(file_upload).where(
            file_upload.c.tenant_id == tenant_id, file_upload.c.id == upload_id)).first()
    return None if row is None else _upload(row)


def recent(engine: Engine, tenant_id: str, limit: int = 20) -> list[Upload]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(file_upload).where(file_upload.c.tenant_id == tenant_id)
                            .order_by(file_upload.c.id.desc()).limit(limit)).all()
    return [_upload(row) for row in rows]


def confirm(engine: Engine, tenant_id: str, upload_id: int, mapping: FileMapping,
            mode: str) -> bool:
    """Queue a draft with its confirmed mapping and mode; False if it is not a draft."""
    if mode not in UPLOAD_MODES:
        raise ValueError(f"mode must be one of {UPLOAD_MODES}, not {mode!r}")
    with engine.begin() as conn:
        return bool(conn.execute(sa.update(file_upload).where(
            file_upload.c.tenant_id == tenant_id, file_upload.c.id == upload_id,
            file_upload.c.status == "draft",
        ).values(mapping=mapping.as_json(), mode=mode, status="queued",
                 queued_at=utcnow())).rowcount)


def discard(engine: Engine, tenant_id: str, upload_id: int) -> bool:
    """Delete a draft and its bytes (an upload already queued is kept: it is on record)."""
    with engine.begin() as conn:
        return bool(conn.execute(sa.delete(file_upload).where(
            file_upload.c.tenant_id == tenant_id, file_upload.c.id == upload_id,
            file_upload.c.status == "draft")).rowcount)


# What erasure empties here (accrue.erasure), chunks first.
TENANT_TABLES: tuple[sa.Table, ...] = (file_upload_chunk, file_upload)


def delete_tenant(engine: Engine, tenant_id: str) -> dict[str, int]:
    """Erasure: the uploaded exports are the tenant's data (chunks first, then uploads)."""
    validate_tenant_id(tenant_id)
    with engine.begin() as conn:
        chunks = conn.execute(sa.delete(file_upload_chunk)
                              .where(file_upload_chunk.c.tenant_id == tenant_id))
        uploads = conn.execute(sa.delete(file_upload).where(file_upload.c.tenant_id == tenant_id))
    return {file_upload_chunk.name: int(chunks.rowcount or 0),
            file_upload.name: int(uploads.rowcount or 0)}


def any_confirmed(engine: Engine, tenant_id: str) -> bool:
    """Whether the tenant has confirmed an upload (the wizard's file setup is then done)."""
    with engine.connect() as conn:
        return conn.execute(sa.select(file_upload.c.id).where(
            file_upload.c.tenant_id == tenant_id, file_upload.c.status != "draft").limit(1)
        ).first() is not None


def next_open(engine: Engine, tenant_id: str, object_name: str) -> Upload | None:
    """The oldest upload of the object the feed has still to import (or to finish)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(file_upload).where(
            file_upload.c.tenant_id == tenant_id, file_upload.c.object_name == object_name,
            file_upload.c.status.in_(OPEN)).order_by(file_upload.c.id).limit(1)).first()
    return None if row is None else _upload(row)


def open_objects(engine: Engine, tenant_id: str) -> set[str]:
    """The objects with uploads waiting for the feed (asked every sensor tick: one query
    on the (tenant_id, status) index)."""
    with engine.connect() as conn:
        return set(conn.execute(sa.select(file_upload.c.object_name).distinct().where(
            file_upload.c.tenant_id == tenant_id, file_upload.c.status.in_(OPEN))).scalars())


def uploaded_objects(engine: Engine, tenant_id: str) -> list[str]:
    """The objects the tenant has ever uploaded files for (drafts included)."""
    with engine.connect() as conn:
        return sorted(conn.execute(sa.select(file_upload.c.object_name).distinct().where(
            file_upload.c.tenant_id == tenant_id)).scalars())


def started(engine: Engine, tenant_id: str, upload_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.update(file_upload).where(
            file_upload.c.tenant_id == tenant_id, file_upload.c.id == upload_id,
            file_upload.c.status == "queued",
        ).values(status="importing", started_at=utcnow()))


def finish(engine: Engine, tenant_id: str, upload_id: int, *, counts: Mapping[str, Any],
           errors: list[tuple[int, str]], error: str | None = None) -> None:
    """Done (or failed, with `error`): the figures the result page shows."""
    with engine.begin() as conn:
        conn.execute(sa.update(file_upload).where(
            file_upload.c.tenant_id == tenant_id, file_upload.c.id == upload_id).values(
            status="failed" if error else "done", counts=dict(counts),
            errors=[list(e) for e in errors], error=error, finished_at=utcnow()))


@contextmanager
def materialized(engine: Engine, upload: Upload) -> Iterator[Path]:
    """The upload's bytes in a private temporary file named as uploaded (streamed out chunk
    by chunk and checked against the stored SHA-256), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="accrue-upload-"))
    path = folder / (Path(upload.filename).name or "upload.csv")
    try:
        digest = hashlib.sha256()
        with engine.connect() as conn, open(path, "wb") as handle:
            seq = 0
            while True:
                chunk = conn.execute(sa.select(file_upload_chunk.c.data).where(
                    file_upload_chunk.c.upload_id == upload.id,
                    file_upload_chunk.c.seq == seq)).scalar_one_or_none()
                if chunk is None:
                    break
                digest.update(chunk)
                handle.write(chunk)
                seq += 1
        if digest.hexdigest() != upload.sha256:
            raise FileImportError(f"upload {upload.id}: the stored bytes do not match their "
                                  "SHA-256; upload the file again")
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)
