"""The file import's tables (issue 13, F9): confirmed mappings and uploaded exports."""

from __future__ import annotations

import sqlalchemy as sa

from accrue.schema.base import (
    OBJECT_NAME_LENGTH,
    UtcDateTime,
    big_id,
    json_type,
    metadata,
    one_of,
    tenant_id_column,
    timestamps,
)

# File import (issue 13, F9): the mapping an admin confirmed for an export of one header shape
# (accrue.file_import.proposal is the one write path), so the next file of that shape
# imports without questions. The import's own progress stays in sync_state.
file_import_mapping = sa.Table(
    "file_import_mapping",
    metadata,
    tenant_id_column(primary_key=True),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), primary_key=True),
    sa.Column("header_signature", sa.String(64), primary_key=True),
    sa.Column("headers", json_type(), nullable=False),
    sa.Column("mapping", json_type(), nullable=False),
    *timestamps(),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
)

# File uploads (issue 13, F9): an export the admin uploaded in the concierge, queued for the
# pipelines' "file" feed (accrue.file_import.uploads is the one write path). The bytes are
# in the warehouse (file_upload_chunk), the one store the concierge and every pipeline
# worker share: a local disk is not shared between their containers.
UPLOAD_STATUSES: tuple[str, ...] = ("draft", "queued", "importing", "done", "failed")
UPLOAD_MODES: tuple[str, ...] = ("snapshot", "changes")
file_upload = sa.Table(
    "file_upload",
    metadata,
    big_id(),
    tenant_id_column(),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("member", sa.String(255), nullable=True),  # the zip member imported
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("mode", sa.String(16), nullable=False, server_default="changes"),
    sa.Column("header_signature", sa.String(64), nullable=False),  # file_import_mapping's key
    sa.Column("mapping", json_type(), nullable=True),  # as confirmed for this upload
    sa.Column("proposal", json_type(), nullable=False),  # what the admin was shown
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("counts", json_type(), nullable=True),
    sa.Column("errors", json_type(), nullable=True),  # the first rows quarantined: [line, why]
    sa.Column("error", sa.Text(), nullable=True),  # why the import failed
    sa.Column("uploaded_by", sa.Integer(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("queued_at", UtcDateTime(), nullable=True),
    sa.Column("started_at", UtcDateTime(), nullable=True),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["uploaded_by"], ["app_user.id"], ondelete="SET NULL"),
    sa.CheckConstraint(one_of("status", UPLOAD_STATUSES), name="status"),
    sa.CheckConstraint(one_of("mode", UPLOAD_MODES), name="mode"),
    sa.Index("ix_file_upload_tenant_id_status", "tenant_id", "status"),
)
file_upload_chunk = sa.Table(
    "file_upload_chunk",
    metadata,
    sa.Column("upload_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
              primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
    tenant_id_column(),
    sa.Column("data", sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(["upload_id"], ["file_upload.id"], ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.Index("ix_file_upload_chunk_tenant_id", "tenant_id"),
)


# Who writes each table declared here (see accrue.schema.writers).
WRITERS: dict[str, str] = {
    "file_import_mapping": "accrue/file_import/proposal.py",
    "file_upload": "accrue/file_import/uploads.py",
    "file_upload_chunk": "accrue/file_import/uploads.py",
}
