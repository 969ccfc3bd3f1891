"""The audit trail's one write path (`audit_event`): who did what, when, with what outcome.

The concierge (`onboarding_app.audit`, which adds the logged-in person and drops
credential-like keys from `detail`), the first-data e-mail (`accrue.onboarding_notify`, run
by the status page and the Dagster sensor alike) and `accrue keys rotate` all append here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from accrue.schema import audit_event, utcnow

ACTOR_LENGTH = 100


def append(conn: Connection, action: str, *, outcome: str, actor: str,
           tenant_id: str | None = None, detail: Mapping[str, Any] | None = None,
           ip: str | None = None) -> None:
    """Append one event in the caller's transaction; `detail` names things, never values."""
    conn.execute(sa.insert(audit_event).values(
        tenant_id=tenant_id, actor=actor[:ACTOR_LENGTH], action=action, outcome=outcome,
        detail=None if detail is None else dict(detail), ip=ip, created_at=utcnow(),
    ))
