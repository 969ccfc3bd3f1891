"""`NetSuiteHarness`: a seeded NetSuite account for the contract suite, chaos and the demo.

The writer changes records through our own client's record-service calls, as an
integration would, taking common-model fields; the account signs callers in with
OAuth 2.0 M2M (an EC P-256 certificate registered at start) or TBA.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from connectors.netsuite.client import M2mCredentials, NetSuiteClient, TbaCredentials
from connectors.sandbox_kit.faults import split_counted
from connectors.sandbox_kit.harness import CrmWriter, RunningCrmSandbox, SandboxHarness
from connectors.sandbox_kit.server import BackgroundServer

from .schema import RECORD_TYPES
from .seed import seed_world
from .server import NetSuiteApp, Settings
from .store import AccountStore

ACCOUNT_ID = "1234567_SB1"
CLIENT_ID = "sandbox-m2m-client"
CERTIFICATE_ID = "sandbox-certificate-1"
TBA = TbaCredentials("sandbox-consumer-key", "sandbox-consumer-secret", "sandbox-token-id",
                     "sandbox-token-secret")
TIMEZONE = "America/Los_Angeles"


def private_key_pem(secret: int) -> str:
    """A fixed EC P-256 key (made-up sandbox secret): the same for every run."""
    key = ec.derive_private_key(secret, ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_key_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


GOOD_KEY = private_key_pem(0x5EED_0001_ACC0_0E)
WRONG_KEY = private_key_pem(0xBAD_0002)

# Common object → (record type, {common column: REST field}, references among them).
WRITABLE: dict[str, tuple[str, dict[str, str]]] = {
    "account": ("customer", {
        "name": "companyName", "industry": "custentity_industry",
        "employee_count": "custentity_employee_count",
        "annual_revenue": "custentity_annual_revenue", "website": "url",
        "owner_id": "salesRep", "parent_id": "parent"}),
    "contact": ("contact", {
        "account_id": "company", "first_name": "firstName", "last_name": "lastName",
        "email": "email", "title": "title", "owner_id": "owner"}),
    "opportunity": ("opportunity", {
        "name": "title", "account_id": "entity", "amount": "projectedTotal",
        "stage": "entityStatus", "close_date": "expectedCloseDate",
        "probability": "probability", "opportunity_type": "custbody_opportunity_type",
        "lead_source": "custbody_lead_source", "owner_id": "employee"}),
    "user": ("employee", {
        "name": "entityId", "email": "email", "title": "title", "manager_id": "supervisor",
        "is_active": "isInactive"}),
    "product": ("noninventorysaleitem", {
        "name": "displayName", "product_code": "itemId", "family": "custitem_family",
        "unit_cost": "cost", "is_active": "isInactive"}),
}
LIVE_COUNTS = {
    "user": 'SELECT COUNT(*) FROM "employee"',
    "account": 'SELECT COUNT(*) FROM "customer"',
    "contact": 'SELECT COUNT(*) FROM "contact"',
    "product": 'SELECT COUNT(*) FROM "item"',
    "price_book_entry": 'SELECT COUNT(*) FROM "pricing"',
    "opportunity": """SELECT COUNT(*) FROM "transaction" WHERE "type" = 'Opprtnty'""",
    "opportunity_line": """SELECT COUNT(*) FROM "transactionline" l JOIN "transaction" t
        ON t."id" = l."transaction" WHERE t."type" = 'Opprtnty' AND l."mainline" = 'F'""",
    "activity": """SELECT (SELECT COUNT(*) FROM "phonecall") + (SELECT COUNT(*) FROM "task")
        + (SELECT COUNT(*) FROM "calendarevent")""",
}
REFERENCES = {"account_id", "owner_id", "parent_id", "manager_id", "opportunity_id",
              "contact_id"}
# Activities: the record type per common kind, and each type's REST fields.
ACTIVITY_TYPES = {"call": "phonecall", "task": "task", "meeting": "calendarevent"}
_ACTIVITY_LINKS = {"subject": "title", "account_id": "company", "opportunity_id": "transaction"}
ACTIVITY_FIELDS: dict[str, dict[str, str]] = {
    "phonecall": {**_ACTIVITY_LINKS, "status": "status", "due_date": "startDate",
                  "activity_at": "completedDate", "owner_id": "assigned", "contact_id": "contact",
                  "duration_minutes": "custevent_duration_minutes"},
    "task": {**_ACTIVITY_LINKS, "status": "status", "due_date": "dueDate",
             "activity_at": "completedDate", "owner_id": "assigned", "contact_id": "contact"},
    "calendarevent": {**_ACTIVITY_LINKS, "activity_at": "startDate", "owner_id": "organizer"},
}
LINE_FIELDS = {"product_id": "item", "quantity": "quantity", "unit_price": "rate",
               "total_price": "amount", "list_price": "custcol_list_price",
               "discount": "custcol_discount"}


def _value(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in REFERENCES or column == "product_id":
        return {"id": str(value)}
    if column == "is_active":
        return not value  # NetSuite stores the opposite: isInactive
    if isinstance(value, date):
        return value.isoformat()
    return value


class NetSuiteWriter(CrmWriter):
    """Writes through `NetSuiteClient`'s record-service calls, in common-model words."""

    def __init__(self, client: NetSuiteClient, store: AccountStore) -> None:
        self.client, self.store = client, store

    def _body(self, object_name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        record_type, names = WRITABLE[object_name]
        body: dict[str, Any] = {}
        for column, value in fields.items():
            if column not in names:
                raise KeyError(f"the NetSuite writer cannot set {object_name}.{column}")
            if column == "stage":
                body[names[column]] = {"id": str(self._status_id(str(value)))}
                continue
            body[names[column]] = _value(column, value)
        return body

    def _status_id(self, name: str) -> int:
        found = self.client.suiteql(f"SELECT id FROM entitystatus WHERE name = '{name}'")
        if found["items"]:
            return int(found["items"][0]["id"])
        return self.store.insert("entitystatus", {"name": name})  # the admin adds a status

    def _activity_body(self, part: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        names, body = ACTIVITY_FIELDS[part], {}
        for column, value in fields.items():
            if column == "activity_type" and ACTIVITY_TYPES.get(str(value)) == part:
                continue
            if column == "is_closed" and part != "calendarevent":
                body["status"] = "COMPLETE" if value else (
                    "SCHEDULED" if part == "phonecall" else "NOTSTART")
                continue
            if column == "lead_id" and value is None:
                continue
            if column not in names:
                raise KeyError(f"the NetSuite writer cannot set {column} on a {part}")
            body[names[column]] = _value(column, value)
        return body

    def create(self, object_name: str, fields: Mapping[str, Any]) -> str:
        if object_name == "opportunity_line":
            return self._add_line(fields)
        if object_name == "activity":
            part = ACTIVITY_TYPES[str(fields.get("activity_type"))]
            return f"{part}:{self.client.create(part, self._activity_body(part, fields))}"
        record_type = WRITABLE[object_name][0]
        return str(self.client.create(record_type, self._body(object_name, fields)))

    def update(self, object_name: str, source_id: str, fields: Mapping[str, Any]) -> None:
        if object_name == "opportunity_line":
            transaction, line = self._line(source_id)
            body = {"line": line, **self._line_body(fields)}
            self.client.update("opportunity", transaction, {"item": {"items": [body]}})
            return
        if object_name == "activity":
            part, _, key = source_id.partition(":")
            self.client.update(part, key, self._activity_body(part, fields))
            return
        record_type = WRITABLE[object_name][0]
        self.client.update(record_type, source_id, self._body(object_name, fields))

    def delete(self, object_name: str, source_id: str) -> None:
        if object_name == "opportunity_line":
            transaction, line = self._line(source_id)
            rest = self.client.suiteql(
                f"SELECT linesequencenumber FROM transactionline WHERE transaction = "
                f"{transaction} AND mainline = 'F' AND linesequencenumber <> {line} "
                "ORDER BY linesequencenumber")
            kept = [{"line": int(i["linesequencenumber"])} for i in rest["items"]]
            self.client.update("opportunity", transaction, {"item": {"items": kept}},
                               replace="item")
            return
        if object_name == "activity":
            part, _, key = source_id.partition(":")
            self.client.delete(part, key)
            return
        self.client.delete(WRITABLE[object_name][0], source_id)

    def write_raw(self, object_name: str, source_id: str, payload: Mapping[str, Any]) -> None:
        """Store values as given, past the record service's checks (a bad-value test)."""
        if object_name not in WRITABLE:
            raise NotImplementedError(f"raw writes of {object_name} are not supported")
        record_type, names = WRITABLE[object_name]
        table, _ = RECORD_TYPES[record_type]
        columns = {names.get(k, k).lower(): v for k, v in payload.items()}
        self.store.update(table, int(source_id), columns)

    def _line_body(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for column, value in fields.items():
            if column in ("opportunity_id", "price_book_entry_id"):
                continue
            body[LINE_FIELDS[column]] = _value(column, value)
        entry = fields.get("price_book_entry_id")
        if entry:
            body["price"] = {"id": str(entry).split("-")[1]}
        return body

    def _add_line(self, fields: Mapping[str, Any]) -> str:
        transaction = int(fields["opportunity_id"])
        self.client.update("opportunity", transaction,
                           {"item": {"items": [self._line_body(fields)]}})
        found = self.client.suiteql(
            f"SELECT MAX(uniquekey) AS k FROM transactionline WHERE transaction = {transaction}")
        return str(found["items"][0]["k"])

    def _line(self, source_id: str) -> tuple[int, int]:
        found = self.client.suiteql(
            f"SELECT transaction, linesequencenumber FROM transactionline "
            f"WHERE uniquekey = {int(source_id)}")
        item = found["items"][0]
        return int(item["transaction"]), int(item["linesequencenumber"])


@dataclass
class RunningNetSuite(RunningCrmSandbox):
    url: str
    store: AccountStore
    app: NetSuiteApp
    server: BackgroundServer
    page_size: int | None = None
    moved_clock: bool = False  # a test moves the account's time: check() must not object

    @property
    def settings(self) -> Settings:
        return self.app.settings

    def connection(self) -> tuple[dict[str, str], dict[str, Any]]:
        return ({"client_id": CLIENT_ID, "private_key": GOOD_KEY},
                self._config("oauth2_m2m", certificate_id=CERTIFICATE_ID))

    def bad_connection(self) -> tuple[dict[str, str], dict[str, Any]]:
        return ({"client_id": CLIENT_ID, "private_key": WRONG_KEY},
                self._config("oauth2_m2m", certificate_id=CERTIFICATE_ID))

    def tba_connection(self, **changes: str) -> tuple[dict[str, str], dict[str, Any]]:
        secrets = {"consumer_key": TBA.consumer_key, "consumer_secret": TBA.consumer_secret,
                   "token_id": TBA.token_id, "token_secret": TBA.token_secret, **changes}
        return secrets, self._config("oauth1_tba")

    def _config(self, auth: str, **extra: Any) -> dict[str, Any]:
        config: dict[str, Any] = {"auth": auth, "account_id": self.settings.account_id,
                                  "timezone": self.store.tz.key, "sandbox_url": self.url,
                                  **extra}
        if self.page_size:
            config["page_size"] = self.page_size
        if self.moved_clock:
            config["clock_tolerance_seconds"] = 10**9
        return config

    def client(self) -> NetSuiteClient:
        return NetSuiteClient(self.settings.account_id, m2m=M2mCredentials(
            CLIENT_ID, CERTIFICATE_ID, GOOD_KEY), sandbox_url=self.url)

    def writer(self) -> NetSuiteWriter:
        return NetSuiteWriter(self.client(), self.store)

    def set_faults(self, switches: Mapping[str, Any]) -> None:
        """The kit's switches (`FaultConfig`: 5xx, 429, quota, token expiry, latency, drops,
        late commits) plus `fail_next` / `throttle_next`; `{}` clears them all."""
        counted, kit = split_counted(switches)  # all validated before anything changes
        self.app.faults.set(counted)
        self.app.planner.clear()
        if kit:
            self.app.planner.update(kit)

    def fault_counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.app.planner.state()["injected"].items()}

    def live_count(self, object_name: str) -> int:
        """Counted in the state file itself, not through the connector's queries."""
        return int(self.store.scalar(LIVE_COUNTS[object_name]))

    def stop(self) -> None:
        self.server.stop()
        self.store.close()


class NetSuiteHarness(SandboxHarness):
    def start(self, path: Path, *, opportunities: int, seed: int = 7,
              page_size: int | None = None, clock: Callable[[], datetime] | None = None,
              faults: Mapping[str, Any] | None = None, host: str = "127.0.0.1",
              port: int = 0, timezone: str = TIMEZONE,
              settings: Settings | None = None) -> RunningNetSuite:
        store = AccountStore(str(path), timezone=timezone, clock=clock)
        app = NetSuiteApp(store, settings or Settings(account_id=ACCOUNT_ID))
        if store.meta("seeded") is None:
            from connectors.sandbox_kit.deal_model import build_world

            anchor = clock() if clock else None
            seed_world(store, build_world(opportunities, seed, anchor=anchor))
            app.auth.register_integration(TBA.consumer_key, TBA.consumer_secret, CLIENT_ID)
            app.auth.register_token(TBA.token_id, TBA.token_secret, TBA.consumer_key)
            app.auth.register_certificate(CERTIFICATE_ID, CLIENT_ID, public_key_pem(GOOD_KEY))
            store.set_meta("seeded", "1")
        server = BackgroundServer(app, host, port, name="netsuite-sandbox")
        running = RunningNetSuite(server.url, store, app, server, page_size, clock is not None)
        if faults:
            running.set_faults(faults)
        return running

    def connection_at(self, url: str) -> tuple[dict[str, str], dict[str, Any]]:
        return ({"client_id": CLIENT_ID, "private_key": GOOD_KEY},
                {"auth": "oauth2_m2m", "account_id": ACCOUNT_ID, "timezone": TIMEZONE,
                 "certificate_id": CERTIFICATE_ID, "sandbox_url": url})
