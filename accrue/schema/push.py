"""The push API's tables (issue 13, F8): credentials, the inbox of pushed batches, the
pushed objects' schemas."""

from __future__ import annotations

import sqlalchemy as sa

from accrue.schema.base import (
    KEY_ID_LENGTH,
    OBJECT_NAME_LENGTH,
    UtcDateTime,
    big_id,
    json_type,
    metadata,
    tenant_id_column,
    timestamps,
)

# Push API (issue 13, F8): a tenant's push client id and its signing secrets
# (accrue.push.credentials is the one write path). One row per secret, all of a tenant's rows
# sharing its client id; a secret is sealed like CRM credentials (AES-GCM bound to tenant and
# row). During a rotation the old and new rows are both live; `retired_at` ends the old one.
push_credential = sa.Table(
    "push_credential",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    tenant_id_column(),
    sa.Column("client_id", sa.String(64), nullable=False),
    sa.Column("secret_ciphertext", sa.Text(), nullable=False),
    sa.Column("key_id", sa.String(KEY_ID_LENGTH), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("retired_at", UtcDateTime(), nullable=True),  # NULL: verifies pushes
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.Index("ix_push_credential_client_id", "client_id"),
    sa.Index("ix_push_credential_tenant_id", "tenant_id"),
)

# Pushed batches, durable before the push is acknowledged (accrue.push.inbox is the one
# write path): the raw body as received, the non-secret headers, the time it arrived. A
# `webhook-id` is stored once per tenant (the unique key answers a replay); `processed_at`
# is set once every synced object's cursor has passed the batch (accrue.push.feed).
push_inbox = sa.Table(
    "push_inbox",
    metadata,
    big_id(),
    tenant_id_column(),
    sa.Column("webhook_id", sa.String(255), nullable=False),
    sa.Column("received_at", UtcDateTime(), nullable=False),
    sa.Column("headers", json_type(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
    sa.Column("record_count", sa.Integer(), nullable=False),
    sa.Column("processed_at", UtcDateTime(), nullable=True),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("tenant_id", "webhook_id"),
    sa.Index("ix_push_inbox_tenant_id_processed_at", "tenant_id", "processed_at"),
)

# The schema of each pushed object (issue 13, F8; accrue.push.schema is the one write path):
# fixed by the object's first push (field names, JSON types, a sample value), its mapping of
# fields to common-model columns, and the drift later pushes showed (added, dropped or
# retyped fields), which changes the mapping only once the admin accepts it.
push_schema = sa.Table(
    "push_schema",
    metadata,
    tenant_id_column(primary_key=True),
    sa.Column("object_name", sa.String(OBJECT_NAME_LENGTH), primary_key=True),
    sa.Column("fields", json_type(), nullable=False),  # {field: {type, sample, first_seen}}
    sa.Column("mapping", json_type(), nullable=False),  # {field: column or null}
    sa.Column("drift", json_type(), nullable=False),  # [{field, kind, first_seen, example}]
    sa.Column("accepted_at", UtcDateTime(), nullable=True),  # the admin's last acceptance
    *timestamps(),
    sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"], ondelete="CASCADE"),
)


# Who writes each table declared here (see accrue.schema.writers).
WRITERS: dict[str, str] = {
    "push_credential": "accrue/push/credentials.py",
    "push_inbox": "accrue/push/inbox.py",
    "push_schema": "accrue/push/schema.py",
}
