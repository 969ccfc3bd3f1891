"""The audit trail: who saved, tested, connected, completed, and with what outcome.

`detail` must name things (fields, objects, steps), never carry values: the
helper drops any key that looks like a credential, so a careless call cannot
turn the audit log into a second copy of the vault.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from flask import g, has_request_context, request
from sqlalchemy.engine import Engine

from accrue import audit
from accrue.schema import audit_event

_SECRETISH = re.compile(r"pass(word)?|secret|token|key|code|verifier|session", re.I)


def _clean(detail: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not detail:
        return None
    return {k: v for k, v in detail.items() if not _SECRETISH.search(k)}


def record(
    engine: Engine,
    action: str,
    *,
    outcome: str = "ok",
    tenant_id: str | None = None,
    actor: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Append one event; tenant and actor default to the logged-in admin."""
    user = g.get("user") if has_request_context() else None
    if tenant_id is None and user is not None:
        tenant_id = user.tenant_id
    if actor is None:
        actor = f"user:{user.id}" if user is not None else "anonymous"
    ip = request.remote_addr if has_request_context() else None
    with engine.begin() as conn:
        audit.append(conn, action, outcome=outcome, actor=actor, tenant_id=tenant_id,
                     detail=_clean(detail), ip=ip)


def events(engine: Engine, tenant_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The tenant's latest events, newest first."""
    query = (
        sa.select(audit_event).where(audit_event.c.tenant_id == tenant_id)
        .order_by(audit_event.c.id.desc()).limit(limit)
    )
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
