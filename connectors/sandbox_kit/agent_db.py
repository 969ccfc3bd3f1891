"""A customer's own CRM database, for the push agent to read: the demo's "C2CRM"-like
source, and the source of truth of the agent's tests and chaos run.

The deal world (`deal_model.build_world`) rendered in a CRM's own words — tables
`c2_users`, `c2_companies`, `c2_people`, `c2_deals`, with their own column names and
number-style ids — in any SQLAlchemy database. The tables exercise each way the agent
reads: companies, people and deals carry a `changed_on` stamp (incremental reads), deals
a `removed` flag (soft deletes), people are deleted for real (seen by absence), users have
no stamp at all (snapshot comparison). `mapping_toml` writes the agent's mapping file for
it; `expected` reads it back in the common model's words, independently of the agent,
for the warehouse-equals-source comparisons; `Mutator` changes it like its users would.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from connectors.sandbox_kit.deal_model import build_world

metadata = sa.MetaData()
USERS = sa.Table(
    "c2_users", metadata,
    sa.Column("user_no", sa.Integer, primary_key=True),
    sa.Column("full_name", sa.String(120)), sa.Column("mail", sa.String(200)),
    sa.Column("job_title", sa.String(120)), sa.Column("dept", sa.String(80)),
    sa.Column("boss_no", sa.Integer), sa.Column("active", sa.Boolean))
COMPANIES = sa.Table(
    "c2_companies", metadata,
    sa.Column("company_no", sa.String(20), primary_key=True),
    sa.Column("company_name", sa.String(200)), sa.Column("sector", sa.String(80)),
    sa.Column("headcount", sa.Integer), sa.Column("turnover", sa.Float),
    sa.Column("country", sa.String(80)), sa.Column("web", sa.String(200)),
    sa.Column("rep_no", sa.Integer), sa.Column("region_code", sa.String(10)),
    sa.Column("changed_on", sa.DateTime, nullable=False))
PEOPLE = sa.Table(
    "c2_people", metadata,
    sa.Column("person_no", sa.String(20), primary_key=True),
    sa.Column("company_no", sa.String(20)), sa.Column("given_name", sa.String(80)),
    sa.Column("family_name", sa.String(80)), sa.Column("mail", sa.String(200)),
    sa.Column("job_title", sa.String(120)), sa.Column("changed_on", sa.DateTime, nullable=False))
DEALS = sa.Table(
    "c2_deals", metadata,
    sa.Column("deal_no", sa.String(20), primary_key=True),
    sa.Column("company_no", sa.String(20)), sa.Column("title", sa.String(200)),
    sa.Column("deal_value", sa.Float), sa.Column("list_value", sa.Float),
    sa.Column("phase", sa.String(80)), sa.Column("closed", sa.Boolean),
    sa.Column("won", sa.Boolean), sa.Column("expected_close", sa.Date),
    sa.Column("chance", sa.Float), sa.Column("rep_no", sa.Integer),
    sa.Column("created_on", sa.DateTime), sa.Column("removed", sa.Boolean, nullable=False),
    sa.Column("changed_on", sa.DateTime, nullable=False))

# object -> (table, id column, {column: common field}); also what the mapping file says.
OBJECTS: dict[str, tuple[sa.Table, str, dict[str, str]]] = {
    "user": (USERS, "user_no", {"full_name": "name", "mail": "email", "job_title": "title",
                                "dept": "department", "boss_no": "manager_id",
                                "active": "is_active"}),
    "account": (COMPANIES, "company_no", {
        "company_name": "name", "sector": "industry", "headcount": "employee_count",
        "turnover": "annual_revenue", "country": "billing_country", "web": "website",
        "rep_no": "owner_id"}),
    "contact": (PEOPLE, "person_no", {"company_no": "account_id", "given_name": "first_name",
                                      "family_name": "last_name", "mail": "email",
                                      "job_title": "title"}),
    "opportunity": (DEALS, "deal_no", {
        "company_no": "account_id", "title": "name", "deal_value": "amount",
        "list_value": "list_amount", "phase": "stage", "closed": "is_closed", "won": "is_won",
        "expected_close": "close_date", "chance": "probability", "rep_no": "owner_id",
        "created_on": "source_created_at"}),
}
EXTRA = {"account": ("region_code",)}
STAMP = {"account": "changed_on", "contact": "changed_on", "opportunity": "changed_on"}
ABSENCE = {"user", "contact"}  # deleted for real: seen as absent
FLAG = {"opportunity": "removed"}


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def _number(neutral_id: str | None, prefix: str) -> str | None:
    return None if neutral_id is None else f"{prefix}-{int(neutral_id.rsplit('-', 1)[1]) + 1:06d}"


def _user(neutral_id: str | None) -> int | None:
    return None if neutral_id is None else int(neutral_id.rsplit("-", 1)[1]) + 1


def build(url: str, n_opportunities: int, seed: int = 42) -> sa.Engine:
    """Create the tables at `url` (dropping old ones) and fill them from the deal world."""
    world = build_world(n_opportunities, seed, activities=False)
    engine = sa.create_engine(url)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    lines: dict[str, float] = {}
    for line in world.objects["opportunity_line"]:
        f = line.fields
        lines[f["opportunity_id"]] = lines.get(f["opportunity_id"], 0.0) + round(
            (f["quantity"] or 0) * (f["list_price"] or 0), 2)
    rows: dict[sa.Table, list[dict[str, Any]]] = {USERS: [], COMPANIES: [], PEOPLE: [],
                                                  DEALS: []}
    for r in world.objects["user"]:
        f = r.fields
        rows[USERS].append({"user_no": _user(r.id), "full_name": f["name"], "mail": f["email"],
                            "job_title": f["title"], "dept": f["department"],
                            "boss_no": _user(f["manager_id"]), "active": f["is_active"]})
    for r in world.objects["account"]:
        f = r.fields
        rows[COMPANIES].append({
            "company_no": _number(r.id, "CO"), "company_name": f["name"],
            "sector": f["industry"], "headcount": f["employee_count"],
            "turnover": f["annual_revenue"], "country": f["billing_country"],
            "web": f["website"], "rep_no": _user(f["owner_id"]),
            "region_code": (f["billing_state"] or "")[:10] or None,
            "changed_on": _naive(r.modified_at)})
    for r in world.objects["contact"]:
        f = r.fields
        rows[PEOPLE].append({
            "person_no": _number(r.id, "PE"), "company_no": _number(f["account_id"], "CO"),
            "given_name": f["first_name"], "family_name": f["last_name"], "mail": f["email"],
            "job_title": f["title"], "changed_on": _naive(r.modified_at)})
    for r in world.objects["opportunity"]:
        f = r.fields
        rows[DEALS].append({
            "deal_no": _number(r.id, "DL"), "company_no": _number(f["account_id"], "CO"),
            "title": f["name"], "deal_value": f["amount"],
            "list_value": lines.get(r.id) or f["list_amount"], "phase": f["stage"],
            "closed": f["is_closed"], "won": f["is_won"], "expected_close": f["close_date"],
            "chance": f["probability"], "rep_no": _user(f["owner_id"]),
            "created_on": _naive(r.created_at), "removed": False,
            "changed_on": _naive(r.modified_at)})
    with engine.begin() as conn:
        for table, values in rows.items():
            if values:
                conn.execute(table.insert(), values)
    return engine


def mapping_toml(*, url: str, tenant: str, client_id: str, secret_env: str | None = None,
                 secret_file: str | None = None, database_url_env: str | None = None,
                 database_url: str | None = None, checkpoint: str = "agent.checkpoint.json",
                 batch_size: int = 500) -> str:
    """The agent's mapping file for this database: the secret from an environment variable
    or a file, the database URL from a variable or written in (as a customer chooses)."""
    secret = (f'secret_env = "{secret_env}"' if secret_env else f'secret_file = "{secret_file}"')
    source = (f'database_url_env = "{database_url_env}"' if database_url_env
              else f'database_url = "{database_url}"')
    parts = [f'checkpoint = "{checkpoint}"\n', "[push]", f'url = "{url}"',
             f'tenant = "{tenant}"', f'client_id = "{client_id}"', secret,
             f"batch_size = {batch_size}", "", "[source]", source]
    for name, (table, id_column, fields) in OBJECTS.items():
        parts += ["", "[[objects]]", f'object = "{name}"', f'table = "{table.name}"',
                  f'id = "{id_column}"']
        if name in STAMP:
            parts.append(f'updated_at = "{STAMP[name]}"')
        if name in FLAG:
            parts.append(f'deleted_flag = "{FLAG[name]}"')
        if name in ABSENCE:
            parts.append("deletes_by_absence = true")
        parts.append("fields = { " + ", ".join(f'{k} = "{v}"' for k, v in fields.items()) + " }")
        if name in EXTRA:
            parts.append("extra = [" + ", ".join(f'"{e}"' for e in EXTRA[name]) + "]")
    return "\n".join(parts) + "\n"


@dataclass(frozen=True)
class Expected:
    deleted: bool
    fields: Mapping[str, Any]


def expected(engine: sa.Engine) -> dict[str, dict[str, Expected]]:
    """Per object, per id (as text), what the warehouse must hold: soft-deleted deals as
    deleted; rows gone from the tables are not listed (the warehouse must hold them
    deleted, or not at all)."""
    out: dict[str, dict[str, Expected]] = {}
    with engine.connect() as conn:
        for name, (table, id_column, fields) in OBJECTS.items():
            found: dict[str, Expected] = {}
            for row in conn.execute(sa.select(table)).mappings():
                deleted = bool(row["removed"]) if name in FLAG else False
                values = {target: row[column] for column, target in fields.items()}
                for key in ("owner_id", "manager_id", "account_id"):
                    if values.get(key) is not None:
                        values[key] = str(values[key])
                found[str(row[id_column])] = Expected(deleted, values)
            out[name] = found
    return out


class Mutator:
    """Changes the database as its users would: new, edited and deleted companies, people
    and deals, renamed users; each write stamps `changed_on` with a strictly later time,
    so no two changes of a table share a stamp. New records get ids drawn from the seed's
    stream (40 random bits), so mutators of later runs on the same database never reuse
    one."""

    def __init__(self, engine: sa.Engine, seed: int) -> None:
        self.engine = engine
        self.rng = random.Random(seed)
        self.serial = 0
        self.key = ""
        self._last = datetime.now(UTC).replace(tzinfo=None)

    def _now(self) -> datetime:
        now = datetime.now(UTC).replace(tzinfo=None)
        self._last = max(now, self._last + timedelta(microseconds=1000))
        return self._last

    def _ids(self, conn: sa.Connection, table: sa.Table, column: str) -> list[Any]:
        return list(conn.scalars(sa.select(table.c[column]).order_by(table.c[column])))

    def step(self) -> str:
        """One change, in its own transaction; returns what it did."""
        kind = self.rng.choice(("new_deal", "edit_deal", "edit_deal", "remove_deal",
                                "restore_deal", "edit_company", "new_company", "new_person",
                                "drop_person", "edit_person", "rename_user"))
        self.serial += 1
        self.key = f"{self.rng.getrandbits(40):010x}"
        with self.engine.begin() as conn:
            companies = self._ids(conn, COMPANIES, "company_no")
            deals = self._ids(conn, DEALS, "deal_no")
            people = self._ids(conn, PEOPLE, "person_no")
            users = self._ids(conn, USERS, "user_no")
            now = self._now()
            if kind == "new_company" or not companies:
                conn.execute(COMPANIES.insert().values(
                    company_no=f"CO-{self.key}", company_name=f"New Co {self.serial}",
                    sector="Technology", headcount=self.rng.randint(5, 5000),
                    turnover=float(self.rng.randint(1, 900)) * 1000.0, country="Germany",
                    rep_no=self.rng.choice(users) if users else None, changed_on=now))
            elif kind == "edit_company":
                conn.execute(COMPANIES.update().where(
                    COMPANIES.c.company_no == self.rng.choice(companies)).values(
                    headcount=self.rng.randint(5, 5000), changed_on=now))
            elif kind == "new_deal" or not deals:
                value = float(self.rng.randint(10, 900)) * 100.0
                conn.execute(DEALS.insert().values(
                    deal_no=f"DL-{self.key}", company_no=self.rng.choice(companies),
                    title=f"Deal {self.serial}", deal_value=value, list_value=value * 1.25,
                    phase="Prospecting", closed=False, won=False,
                    expected_close=(now + timedelta(days=30)).date(), chance=0.1,
                    rep_no=self.rng.choice(users) if users else None, created_on=now,
                    removed=False, changed_on=now))
            elif kind in ("edit_deal", "remove_deal", "restore_deal"):
                deal = conn.execute(sa.select(DEALS).where(
                    DEALS.c.deal_no == self.rng.choice(deals))).mappings().one()
                values: dict[str, Any] = {"changed_on": now}
                if kind == "edit_deal":  # a new quote: a discount off the list, as sellers do
                    listed = deal["list_value"] or deal["deal_value"] or 10_000.0
                    values["deal_value"] = round(listed * self.rng.uniform(0.6, 1.0), 2)
                    if not deal["closed"]:
                        values["phase"] = self.rng.choice(("Qualification", "Proposal",
                                                           "Negotiation"))
                else:
                    values["removed"] = kind == "remove_deal"
                conn.execute(DEALS.update().where(DEALS.c.deal_no == deal["deal_no"])
                             .values(**values))
            elif kind == "new_person" or not people:
                conn.execute(PEOPLE.insert().values(
                    person_no=f"PE-{self.key}", company_no=self.rng.choice(companies),
                    given_name="Alex", family_name=f"Person {self.serial}",
                    mail=f"alex{self.serial}@example.com", job_title="Buyer", changed_on=now))
            elif kind == "drop_person":
                conn.execute(PEOPLE.delete().where(
                    PEOPLE.c.person_no == self.rng.choice(people)))
            elif kind == "edit_person":
                conn.execute(PEOPLE.update().where(
                    PEOPLE.c.person_no == self.rng.choice(people)).values(
                    job_title=self.rng.choice(("CTO", "Buyer", "CFO")), changed_on=now))
            else:
                conn.execute(USERS.update().where(
                    USERS.c.user_no == self.rng.choice(users)).values(
                    full_name=f"Seller {self.serial}"))
        return kind
