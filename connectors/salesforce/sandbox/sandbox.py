"""`SalesforceSandbox`: one local org — its state file, settings, sessions and API.

The HTTP layer is thin on purpose: everything an endpoint does is a method
here, so tests, the generator and future tooling can drive the org directly
and get exactly the behaviour a client sees over the wire.
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from . import replication, sobject_collections
from .bulk import BulkJobs
from .config import (
    DEFAULT_PASSWORD,
    DEFAULT_SECURITY_TOKEN,
    DEFAULT_USERNAME,
    ORG_EPOCH,
    SandboxConfig,
)
from .errors import ApiError, request_limit_exceeded
from .ids import PROFILE_PREFIX, make_id, normalize_id
from .query import QueryEngine
from .registry import (
    SchemaRegistry,
    custom_field_from_spec,
    custom_field_to_spec,
    describe_object,
)
from .soql_compiler import compile_query
from .store import SandboxStore
from .values import format_datetime, utc_now
from .writes import RecordWriter, WriteContext


class SalesforceSandbox:
    """A local Salesforce org persisted in one SQLite file.

    Opening an existing file keeps its data, users and settings; credentials
    and settings passed here override the stored ones (and are saved).
    """

    def __init__(
        self,
        state_path: str,
        *,
        username: str | None = None,
        password: str | None = None,
        security_token: str | None = None,
        clock: Callable[[], datetime] | None = None,
        **config: Any,
    ) -> None:
        self.state_path = str(state_path)
        self.clock = clock or utc_now
        # Set by the fault injector: how far in the past the current write commits.
        self.write_delay: Callable[[], timedelta | None] | None = None
        self.store = SandboxStore(self.state_path)
        self.schema = SchemaRegistry()
        self.writer = RecordWriter(self)
        self._describe_cache: dict[tuple[int, str, str], str] = {}
        self._cache_lock = threading.Lock()
        try:
            with self.store.write() as conn:
                self.store.ensure_tables(conn, self.schema.objects.values())
                stored = self.store.meta_get(conn, "config") or {}
                try:
                    self._config = SandboxConfig.from_dict(stored).updated(config)
                except ApiError as error:
                    raise ValueError(error.message) from None
                self.store.meta_set(conn, "config", self._config.to_dict())
                creds = self.store.meta_get(conn, "credentials") or {
                    "username": DEFAULT_USERNAME, "password": DEFAULT_PASSWORD,
                    "security_token": DEFAULT_SECURITY_TOKEN,
                }
                for key, value in (("username", username), ("password", password),
                                   ("security_token", security_token)):
                    if value is not None:
                        creds[key] = value
                self.store.meta_set(conn, "credentials", creds)
                self._credentials = creds
                if self.store.meta_get(conn, "org_id") is None:
                    self._bootstrap(conn)
                self.org_id: str = self.store.meta_get(conn, "org_id")
                self.admin_user_id: str = self.store.meta_get(conn, "admin_user_id")
                self._sync_admin_user(conn)
                self._load_custom_fields(conn)
        except BaseException:
            self.store.close()
            raise
        self.queries = QueryEngine(lambda: self._config.query_locator_ttl_seconds,
                                   lambda: self._config.max_query_locators,
                                   lambda: self.now().timestamp())
        self.bulk = BulkJobs(self)

    # -- lifecycle -----------------------------------------------------------

    def _bootstrap(self, conn: Any) -> None:
        org_id = self.store.allocate_ids(conn, "00D", 1)[0]
        admin_id = self.store.allocate_ids(conn, "005", 1)[0]
        audit = {"CreatedDate": ORG_EPOCH, "CreatedById": admin_id, "LastModifiedDate": ORG_EPOCH,
                 "LastModifiedById": admin_id, "SystemModstamp": ORG_EPOCH}
        self.store.insert(conn, self.schema.require("Organization"), {
            "Id": org_id, "Name": self._config.org_name, "IsSandbox": True,
            "OrganizationType": "Enterprise Edition", "InstanceName": "CS42",
            "DefaultLocaleSidKey": "en_US", "TimeZoneSidKey": "GMT", **audit,
        })
        self.store.insert(conn, self.schema.require("User"), {
            "Id": admin_id, "Username": self._credentials["username"], "LastName": "User",
            "FirstName": "Integration", "Name": "Integration User", "Alias": "integ",
            "Email": self._credentials["username"], "Title": "Integration User",
            "Department": "IT", "IsActive": True, "ManagerId": None, "UserType": "Standard",
            "TimeZoneSidKey": "GMT", "LocaleSidKey": "en_US", "EmailEncodingKey": "UTF-8",
            "LanguageLocaleKey": "en_US", "ProfileId": self.profile_id(), **audit,
        })
        self.store.meta_set(conn, "org_id", org_id)
        self.store.meta_set(conn, "admin_user_id", admin_id)

    def _sync_admin_user(self, conn: Any) -> None:
        """Keep the integration user's Username in step with the stored credentials."""
        users = self.schema.require("User")
        stored = self.store.get(conn, users, self.admin_user_id)
        username = self._credentials["username"]
        if stored is not None and stored.data.get("Username") != username:
            record = dict(stored.data, Username=username, Email=username)
            stamp = format_datetime(self.now())
            record.update(LastModifiedDate=stamp, SystemModstamp=stamp)
            self.store.save(conn, users, record, is_deleted=False)

    def _load_custom_fields(self, conn: Any) -> None:
        grouped: dict[str, list[Any]] = {}
        for spec in self.store.custom_field_specs(conn):
            grouped.setdefault(spec["sobject"], []).append(custom_field_from_spec(spec))
        self.schema.set_custom_fields(grouped)

    def close(self) -> None:
        self.queries.expire_all()
        self.bulk.expire_all()
        self.store.close()

    # -- settings ------------------------------------------------------------

    def now(self) -> datetime:
        """The org clock (UTC); injectable for tests and time-shifting faults."""
        value = self.clock()
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)

    def write_timestamp(self) -> str:
        """The audit stamp for a write happening now, or earlier for a 'late commit' fault."""
        now = self.now()
        delay = self.write_delay() if self.write_delay is not None else None
        return format_datetime(now - delay if delay else now)

    @property
    def config(self) -> SandboxConfig:
        return self._config

    def update_config(self, changes: Mapping[str, Any]) -> SandboxConfig:
        config = self._config.updated(dict(changes))
        with self.store.write() as conn:
            self.store.meta_set(conn, "config", config.to_dict())
            if "org_name" in changes:
                org = self.schema.require("Organization")
                stored = self.store.get(conn, org, self.org_id)
                if stored is not None:
                    self.store.save(conn, org, dict(stored.data, Name=config.org_name),
                                    is_deleted=False)
        self._config = config
        return config

    @property
    def username(self) -> str:
        return str(self._credentials["username"])

    @property
    def password(self) -> str:
        return str(self._credentials["password"])

    @property
    def security_token(self) -> str:
        return str(self._credentials["security_token"])

    # -- sessions and limits -------------------------------------------------

    def login(self, username: str, password_and_token: str) -> str | None:
        """A new session id when the credentials match, else None."""
        expected = self.password + self.security_token
        if username.strip().lower() != self.username.lower() or not hmac.compare_digest(
            password_and_token.encode(), expected.encode()
        ):
            return None
        sid = f"{self.org_id[:15]}!{secrets.token_urlsafe(72)}"
        now = self.now().timestamp()
        with self.store.write() as conn:
            self.store.prune_sessions(conn, now - 86400)
            self.store.add_session(conn, sid, self.admin_user_id, now,
                                   self._config.session_lifetime_seconds)
        return sid

    def authenticate(self, sid: str | None) -> str:
        """The user id of a live session; sessions slide forward while in use."""
        invalid = ApiError(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if not sid:
            raise invalid
        now = self.now().timestamp()
        with self.store.connection() as conn:
            found = self.store.find_session(conn, sid)
        if found is None or found[2] <= now:
            raise invalid
        user_id, last_used, _expires = found
        lifetime = self._config.session_lifetime_seconds
        if now - last_used > lifetime / 2:
            # Like Salesforce: the timeout restarts once half of it has passed.
            with self.store.write() as conn:
                self.store.touch_session(conn, sid, now, lifetime)
        return user_id

    def expire_sessions(self) -> int:
        """Invalidate every session now; returns how many were live."""
        with self.store.write() as conn:
            return self.store.expire_sessions(conn, self.now().timestamp())

    def _usage_day(self) -> str:
        return f"{self.now():%Y-%m-%d}"

    def meter_api_call(self) -> tuple[int, int]:
        """Count one API call against the daily limit (403 once it is used up)."""
        limit = self._config.api_daily_limit
        with self.store.write() as conn:
            used = self.store.api_calls(conn, self._usage_day())
            if used >= limit:
                raise request_limit_exceeded()
            return self.store.add_api_call(conn, self._usage_day()), limit

    def api_usage(self) -> tuple[int, int]:
        with self.store.connection() as conn:
            return self.store.api_calls(conn, self._usage_day()), self._config.api_daily_limit

    # -- reads ---------------------------------------------------------------

    def query(self, soql: str, *, include_deleted: bool = False, version: str = "59.0",
              batch_size: int | None = None) -> str:
        """First page of a SOQL query as JSON text."""
        compiled = compile_query(soql.strip(), self.schema.objects, self.now())
        page_size = batch_size or self._config.page_size
        with self.store.connection() as conn:
            return self.queries.execute(conn, compiled, include_deleted=include_deleted,
                                        version=version, page_size=page_size)

    def query_more(self, locator: str, *, version: str = "59.0") -> str:
        with self.store.connection() as conn:
            return self.queries.more(conn, locator, version)

    def get_record(self, sobject: str, record_id: str, *, fields: list[str] | None = None,
                   version: str = "59.0") -> str:
        """One live record as JSON text (404 NOT_FOUND when missing or deleted)."""
        obj = self.schema.require(sobject)
        normalized = normalize_id(record_id)
        if normalized is None or normalized[:3] != obj.key_prefix:
            raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
        selected = list(obj.fields)
        if fields:
            selected = []
            for name in fields:
                definition = obj.field(name.strip())
                if definition is None:
                    raise ApiError(400, "INVALID_FIELD",
                                   f"No such column '{name.strip()}' on sobject of type "
                                   f"{obj.name}")
                if definition not in selected:
                    selected.append(definition)
        with self.store.connection() as conn:
            stored = self.store.get(conn, obj, normalized)
            if stored is None or stored.is_deleted:
                raise ApiError(404, "NOT_FOUND", "The requested resource does not exist")
            return self.queries.fetch(conn, obj, selected, [normalized], version)[0]

    def recent_items(self, sobject: str, version: str, limit: int = 5) -> list[Any]:
        obj = self.schema.require(sobject)
        fields = [f for f in (obj.field("Id"), obj.field("Name")) if f is not None]
        with self.store.connection() as conn:
            ids = [r[0] for r in conn.execute(
                f'SELECT Id FROM "{obj.table}" WHERE IsDeleted = 0 '
                "ORDER BY SystemModstamp DESC LIMIT ?", (limit,))]
            return [json.loads(t) for t in self.queries.fetch(conn, obj, fields, ids, version)]

    def describe_global(self, version: str) -> str:
        return self._cached(("*", version), lambda: json.dumps({
            "encoding": "UTF-8", "maxBatchSize": 200,
            "sobjects": [o.describe_global_entry(version) for o in self.schema.objects.values()],
        }))

    def describe(self, sobject: str, version: str) -> str:
        obj = self.schema.require(sobject)
        objects = self.schema.objects
        return self._cached((obj.name, version),
                            lambda: json.dumps(describe_object(objects, obj, version)))

    def _cached(self, key: tuple[str, str], build: Callable[[], str]) -> str:
        full_key = (self.schema.version, *key)
        with self._cache_lock:
            hit = self._describe_cache.get(full_key)
        if hit is None:
            hit = build()
            with self._cache_lock:
                if len(self._describe_cache) > 512:
                    self._describe_cache.clear()
                self._describe_cache[full_key] = hit
        return hit

    def standard_pricebook_id(self, conn: Any) -> str | None:
        obj = self.schema.require("Pricebook2")
        row = conn.execute(
            f'SELECT Id FROM "{obj.table}" WHERE json_extract(data, \'$.IsStandard\') = 1 '
            "AND IsDeleted = 0 ORDER BY Id LIMIT 1"
        ).fetchone()
        return None if row is None else row[0]

    # -- writes --------------------------------------------------------------

    @contextmanager
    def write(self, user_id: str | None = None) -> Iterator[WriteContext]:
        """A write transaction for one API call; rollups run before it commits."""
        with self.store.write() as conn:
            ctx = WriteContext(conn, user_id or self.admin_user_id, self.write_timestamp())
            yield ctx
            self.writer.finish(ctx)

    def create(self, sobject: str, fields: Mapping[str, Any], *,
               user_id: str | None = None) -> str:
        with self.write(user_id) as ctx:
            return self.writer.create(ctx, sobject, fields)

    def update(self, sobject: str, record_id: str, fields: Mapping[str, Any], *,
               user_id: str | None = None) -> None:
        with self.write(user_id) as ctx:
            self.writer.update(ctx, sobject, record_id, fields)

    def delete(self, sobject: str, record_id: str, *, user_id: str | None = None) -> None:
        with self.write(user_id) as ctx:
            self.writer.delete(ctx, sobject, record_id)

    def undelete(self, ids: list[str], *, user_id: str | None = None) -> list[dict[str, Any]]:
        """SOAP-style results, one per id (undelete is never all-or-none here)."""
        return sobject_collections.undelete(self, ids, user_id=user_id)

    def collection_create(self, records: list[Any], *, all_or_none: bool = False,
                          user_id: str | None = None) -> list[dict[str, Any]]:
        return sobject_collections.create(self, records, all_or_none=all_or_none,
                                          user_id=user_id)

    def collection_update(self, records: list[Any], *, all_or_none: bool = False,
                          user_id: str | None = None) -> list[dict[str, Any]]:
        return sobject_collections.update(self, records, all_or_none=all_or_none,
                                          user_id=user_id)

    def collection_delete(self, ids: list[str], *, all_or_none: bool = False,
                          user_id: str | None = None) -> list[dict[str, Any]]:
        return sobject_collections.delete(self, ids, all_or_none=all_or_none, user_id=user_id)

    # -- replication ---------------------------------------------------------

    def updated(self, sobject: str, start: str, end: str) -> dict[str, Any]:
        """`sobjects/{T}/updated`: live records whose SystemModstamp is in the window."""
        return replication.updated(self, sobject, start, end)

    def deleted(self, sobject: str, start: str, end: str) -> dict[str, Any]:
        """`sobjects/{T}/deleted`: recycle-bin entries deleted in the window."""
        return replication.deleted(self, sobject, start, end)

    # -- admin ---------------------------------------------------------------

    def add_custom_field(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        obj = self.schema.get(str(spec.get("sobject") or ""))
        if obj is None:
            raise ApiError(400, "INVALID_TYPE", f"Unknown sObject '{spec.get('sobject')}'")
        definition = custom_field_from_spec(spec)
        if obj.has_field(definition.name):
            raise ApiError(400, "DUPLICATE_DEVELOPER_NAME",
                           f"There is already a field named {definition.name} on {obj.name}")
        stored = custom_field_to_spec(definition, obj.name)
        with self.store.write() as conn:
            self.store.add_custom_field(conn, obj.name, definition.name, stored)
            self._load_custom_fields(conn)
        return stored

    def remove_custom_field(self, sobject: str, name: str) -> None:
        obj = self.schema.get(sobject)
        definition = obj.field(name) if obj else None
        if obj is None or definition is None:
            raise ApiError(404, "NOT_FOUND", f"No custom field {name} on {sobject}")
        if self.schema.is_standard_field(obj.name, definition.name):
            raise ApiError(400, "INVALID_FIELD",
                           f"{definition.name} is part of the standard schema and cannot be "
                           "removed")
        with self.store.write() as conn:
            self.store.remove_custom_field(conn, obj, definition.name)
            self._load_custom_fields(conn)

    def custom_fields(self) -> list[dict[str, Any]]:
        with self.store.connection() as conn:
            return self.store.custom_field_specs(conn)

    def purge(self, sobject: str | None = None) -> dict[str, int]:
        """Empty the recycle bin (of one object or all); deleted records vanish for good."""
        objects = [self.schema.require(sobject)] if sobject else list(
            self.schema.objects.values())
        now = format_datetime(self.now())
        purged: dict[str, int] = {}
        with self.store.write() as conn:
            for obj in objects:
                purged[obj.name] = self.store.purge(conn, obj)
                self.store.meta_set(conn, f"earliest_deleted:{obj.name}", now)
        return purged

    def hard_delete(self, ids: list[str]) -> dict[str, Any]:
        """Physically remove records, leaving no recycle-bin trace."""
        removed: list[str] = []
        missing: list[str] = []
        with self.store.write() as conn:
            for record_id in ids:
                normalized = normalize_id(str(record_id))
                obj = self.schema.by_prefix(normalized[:3]) if normalized else None
                if normalized and obj and self.store.hard_delete(conn, obj, [normalized]):
                    removed.append(normalized)
                else:
                    missing.append(str(record_id))
        return {"deleted": removed, "notFound": missing}

    def truth(self) -> dict[str, Any] | None:
        with self.store.connection() as conn:
            truth: dict[str, Any] | None = self.store.meta_get(conn, "truth")
            return truth

    def set_truth(self, conn: Any, truth: Mapping[str, Any]) -> None:
        self.store.meta_set(conn, "truth", dict(truth))

    def counts(self) -> dict[str, dict[str, int]]:
        with self.store.connection() as conn:
            return {
                name: {"live": self.store.count(conn, obj, deleted=False),
                       "deleted": self.store.count(conn, obj, deleted=True)}
                for name, obj in self.schema.objects.items()
            }

    def is_empty(self) -> bool:
        """True until business data exists (the org and its admin user do not count; the
        standard price book does: an org seeded empty has it, and must not be seeded again)."""
        with self.store.connection() as conn:
            return all(
                self.store.count(conn, self.schema.require(name)) == 0
                for name in ("Account", "Opportunity", "Lead", "Product2", "Pricebook2")
            )

    def health(self) -> dict[str, Any]:
        used, limit = self.api_usage()
        return {
            "status": "ok",
            "orgId": self.org_id,
            "orgName": self._config.org_name,
            "stateFile": self.state_path,
            "now": format_datetime(self.now()),
            "apiUsage": {"used": used, "max": limit},
            "records": self.counts(),
            "seeded": self.truth() is not None,
        }

    def profile_id(self) -> str:
        return make_id(PROFILE_PREFIX, 1)
