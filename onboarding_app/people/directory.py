"""The tenant's CRM users, as the people page lists them: who has access, who is invited."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from accrue.schema import email_link, object_table, utcnow
from onboarding_app import store
from onboarding_app.auth import email_links


@dataclass(frozen=True)
class CrmPerson:
    crm_user_id: str
    name: str
    email: str | None
    title: str | None
    reports: int  # CRM users whose manager this one is
    open_deals: int = 0  # open opportunities this CRM user owns: who has something to read
    account_role: str | None = None  # the role of their Accrue account, if they have one
    account_id: int | None = None
    invited_until: datetime | None = None

    @property
    def suggested_role(self) -> str:
        return "manager" if self.reports else "seller"


def crm_people(engine: Engine, tenant_id: str) -> list[CrmPerson]:
    """Active CRM users of the tenant with their access: managers, sellers, then the rest."""
    users, deals = object_table("user"), object_table("opportunity")
    with engine.connect() as conn:
        owned: dict[str, int] = dict(conn.execute(
            sa.select(deals.c.owner_id, sa.func.count())
            .where(deals.c.tenant_id == tenant_id, deals.c.is_deleted.is_(False),
                   deals.c.is_closed.is_not(True))
            .group_by(deals.c.owner_id)).tuples().all())
        rows = conn.execute(
            sa.select(users.c.source_id, users.c.name, users.c.email, users.c.title,
                      users.c.manager_id)
            .where(users.c.tenant_id == tenant_id, users.c.is_deleted.is_(False),
                   sa.or_(users.c.is_active.is_(None), users.c.is_active.is_(True)))
        ).all()
        pending = conn.execute(
            sa.select(email_link.c.payload, email_link.c.expires_at).where(
                email_link.c.tenant_id == tenant_id, email_link.c.purpose == email_links.INVITE,
                email_link.c.expires_at > utcnow())
        ).all()
    reports: dict[str, int] = {}
    for row in rows:
        if row.manager_id:
            reports[row.manager_id] = reports.get(row.manager_id, 0) + 1
    accounts = {m.crm_user_id: m for m in store.members(engine, tenant_id) if m.crm_user_id}
    invited = {str(payload.get("crm_user_id")): expires for payload, expires in pending}
    people = [
        CrmPerson(
            crm_user_id=row.source_id, name=row.name or row.email or row.source_id,
            email=row.email, title=row.title, reports=reports.get(row.source_id, 0),
            open_deals=int(owned.get(row.source_id, 0)),
            account_role=accounts[row.source_id].role if row.source_id in accounts else None,
            account_id=accounts[row.source_id].id if row.source_id in accounts else None,
            invited_until=invited.get(row.source_id),
        )
        for row in rows
    ]
    # Managers first, then whoever owns deals, then the rest (integration users and the like).
    return sorted(people, key=lambda p: (-min(p.reports, 1), -min(p.open_deals, 1),
                                         p.name.lower()))


def crm_person(engine: Engine, tenant_id: str, crm_user_id: str) -> CrmPerson | None:
    return next((p for p in crm_people(engine, tenant_id) if p.crm_user_id == crm_user_id), None)
