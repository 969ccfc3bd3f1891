"""What a person may see of their tenant's results: the one place role scoping is decided.

An admin sees every deal of the tenant. A seller sees the deals their CRM user owns. A
manager sees the deals of their CRM user and of everyone below them in the CRM's
manager hierarchy (`crm_user.manager_id`, followed to any depth). A manager or seller
whose CRM user is gone sees nothing rather than something wrong. Every query in the
results pages and the API takes a `Scope` and filters on its tenant and its sellers.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.schema import object_table
from onboarding_app.security import CurrentUser


@dataclass(frozen=True)
class Scope:
    tenant_id: str
    role: str
    crm_user_id: str | None
    # None: every seller of the tenant (admin). Otherwise the CRM user ids visible.
    sellers: frozenset[str] | None

    def owner_filter(self, owner_column: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
        """The condition a row owned by `owner_column` must meet to be shown."""
        if self.sellers is None:
            return sa.true()
        if not self.sellers:
            return sa.false()
        return owner_column.in_(sorted(self.sellers))

    def sees(self, owner_id: str | None) -> bool:
        return self.sellers is None or (owner_id is not None and owner_id in self.sellers)


def reports_below(engine: Engine, tenant_id: str, manager_id: str) -> frozenset[str]:
    """The manager and every CRM user below them, however deep (cycles tolerated)."""
    users = object_table("user")
    with engine.connect() as conn:
        rows = conn.execute(sa.select(users.c.source_id, users.c.manager_id).where(
            users.c.tenant_id == tenant_id, users.c.is_deleted.is_(False))).all()
    children: dict[str, list[str]] = {}
    for source_id, parent in rows:
        if parent:
            children.setdefault(parent, []).append(source_id)
    seen = {manager_id}
    frontier = [manager_id]
    while frontier:
        below = [c for parent in frontier for c in children.get(parent, ()) if c not in seen]
        seen.update(below)
        frontier = below
    return frozenset(seen)


def scope_for(engine: Engine, user: CurrentUser) -> Scope:
    if user.role == "admin":
        return Scope(user.tenant_id, user.role, user.crm_user_id, None)
    if not user.crm_user_id:
        return Scope(user.tenant_id, user.role, None, frozenset())
    if user.role == "manager":
        team = reports_below(engine, user.tenant_id, user.crm_user_id)
        return Scope(user.tenant_id, user.role, user.crm_user_id, team)
    return Scope(user.tenant_id, user.role, user.crm_user_id, frozenset({user.crm_user_id}))
