"""The schema of each pushed object: fixed by its first push, mapped to the common model,
drift held back until the admin accepts it (issue 13, F8).

* The first batch that carries an object fixes its schema: every data field it names, the
  JSON type of the field's first non-null value (string, number, boolean, object, array;
  "null" until a value shows one), a sample value and when it was first seen. Its mapping
  to the object's common-model columns is suggested from the field names, with the file
  import's matcher (accrue.file_import.mapping.propose_columns: exact, normalised, the
  names CRMs use such as "value" or "deal_value" for an amount, then fuzzy): one way to
  match names to columns. The suggestion applies at once, so data flows before anyone
  looks; `accepted_at` stays empty until the admin confirms a mapping.
* A later record that adds a field, lacks one, or sends a value of another type is applied
  all the same, its data kept whole in `raw`, and the change is recorded once as drift
  (field, kind added|dropped|retyped, first seen, an example: the value, or the record id
  for a dropped field). The mapping does not change on its own: an added field maps to
  nothing and a retyped field's column is left empty (not fed a value of the new type)
  until the admin accepts the drift (`accept_drift`, or `save_mapping`, which accepts the
  drift seen so far). Records applied before that keep the field in `raw` only.
* A value the mapped column refuses is not coerced here: the warehouse's own value rules
  quarantine the record with the reason (a record is stored exactly or quarantined).

The one module that writes `push_schema`. `observe` runs in the push feed
(accrue.push.feed) as a page is read, before it is applied; it is idempotent (a re-read
after a crash finds the fields and drift already there), so it needs no part in the
page's transaction. Deleting a tenant's data deletes its schemas too (samples are data):
the next push fixes the schema anew.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from accrue.file_import.mapping import ID, MODIFIED, propose_columns
from accrue.schema import push_schema, utcnow
from accrue.tenants import validate_tenant_id
from connectors.common_model import COMMON_OBJECTS

DRIFT_KINDS: tuple[str, ...] = ("added", "dropped", "retyped")
# A sample shows what a field holds, not the whole of it: long texts and nested values
# are cut (the record itself is kept whole in `raw`).
SAMPLE_CHARS = 200


class SchemaError(ValueError):
    """A mapping the admin cannot save, and why."""


@dataclass(frozen=True)
class FieldInfo:
    type: str  # JSON type: string, number, boolean, object, array, or null (none seen yet)
    sample: Any
    first_seen: datetime


@dataclass(frozen=True)
class Drift:
    field: str
    kind: str  # added | dropped | retyped
    first_seen: datetime
    example: Any  # the value (added, retyped) or the id of a record without the field
    type: str | None = None  # the type seen (added, retyped)


@dataclass(frozen=True)
class ObjectSchema:
    object_name: str
    fields: Mapping[str, FieldInfo]
    mapping: Mapping[str, str | None]  # field -> common-model column (None: raw only)
    drift: tuple[Drift, ...] = ()
    accepted_at: datetime | None = None

    def applied_mapping(self) -> dict[str, str]:
        """Field -> column as applied now: a field with drift not yet accepted is held back."""
        held = {d.field for d in self.drift if d.kind in ("added", "retyped")}
        return {f: c for f, c in self.mapping.items() if c and f not in held}

    def columns(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A pushed record's data as common-model column values."""
        return {column: data[name] for name, column in self.applied_mapping().items()
                if name in data}


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def sample_of(value: Any) -> Any:
    if isinstance(value, str):
        return value[:SAMPLE_CHARS]
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)[:SAMPLE_CHARS]
    return value


def suggest_mapping(object_name: str, fields: Iterable[str]) -> dict[str, str | None]:
    """Each field's suggested column (None: none fits), each column used once."""
    names = list(dict.fromkeys(fields))
    matches = propose_columns(object_name, names)
    by_field = {m.header: m.target for m in matches if m.target not in (ID, MODIFIED)}
    return {name: by_field.get(name) for name in names}


# --------------------------------------------------------------------------- storage


def _from_row(row: Mapping[str, Any]) -> ObjectSchema:
    fields = {name: FieldInfo(info["type"], info.get("sample"),
                              datetime.fromisoformat(info["first_seen"]))
              for name, info in (row["fields"] or {}).items()}
    drift = tuple(Drift(d["field"], d["kind"], datetime.fromisoformat(d["first_seen"]),
                        d.get("example"), d.get("type")) for d in row["drift"] or [])
    return ObjectSchema(row["object_name"], fields, dict(row["mapping"] or {}), drift,
                        row["accepted_at"])


def _columns(schema: ObjectSchema) -> dict[str, Any]:
    return {
        "fields": {name: {"type": f.type, "sample": f.sample,
                          "first_seen": f.first_seen.isoformat()}
                   for name, f in schema.fields.items()},
        "mapping": dict(schema.mapping),
        "drift": [{"field": d.field, "kind": d.kind, "first_seen": d.first_seen.isoformat(),
                   "example": d.example, **({"type": d.type} if d.type else {})}
                  for d in schema.drift],
        "accepted_at": schema.accepted_at,
    }


def _where(tenant_id: str, object_name: str) -> tuple[sa.ColumnElement[bool], ...]:
    return (push_schema.c.tenant_id == tenant_id, push_schema.c.object_name == object_name)


def _read(conn: Connection, tenant_id: str, object_name: str, *,
          lock: bool = False) -> ObjectSchema | None:
    query = sa.select(push_schema).where(*_where(tenant_id, object_name))
    if lock:
        query = query.with_for_update()
    row = conn.execute(query).mappings().one_or_none()
    return _from_row(dict(row)) if row else None


def _write(conn: Connection, tenant_id: str, schema: ObjectSchema, *, new: bool) -> None:
    values = _columns(schema)
    if new:
        conn.execute(sa.insert(push_schema).values(
            tenant_id=tenant_id, object_name=schema.object_name, **values))
    else:
        conn.execute(sa.update(push_schema).where(*_where(tenant_id, schema.object_name))
                     .values(**values))


def _check_object(tenant_id: str, object_name: str) -> None:
    validate_tenant_id(tenant_id)
    if object_name not in COMMON_OBJECTS:
        raise SchemaError(f"unknown object {object_name!r}; use one of "
                          f"{', '.join(COMMON_OBJECTS)}")


def load(engine: Engine, tenant_id: str) -> dict[str, ObjectSchema]:
    """Every pushed object's schema of the tenant, by object name."""
    validate_tenant_id(tenant_id)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(push_schema).where(push_schema.c.tenant_id == tenant_id)
                            .order_by(push_schema.c.object_name)).mappings().all()
    return {row["object_name"]: _from_row(dict(row)) for row in rows}


# What erasure empties here (accrue.erasure).
TENANT_TABLES: tuple[sa.Table, ...] = (push_schema,)


def delete_tenant(engine: Engine, tenant_id: str) -> dict[str, int]:
    """Erasure: the schemas hold sample values, so they go with the data; the next push
    fixes them again."""
    validate_tenant_id(tenant_id)
    with engine.begin() as conn:
        deleted = conn.execute(sa.delete(push_schema).where(push_schema.c.tenant_id == tenant_id))
    return {push_schema.name: int(deleted.rowcount or 0)}


def get(engine: Engine, tenant_id: str, object_name: str) -> ObjectSchema | None:
    _check_object(tenant_id, object_name)
    with engine.connect() as conn:
        return _read(conn, tenant_id, object_name)


# --------------------------------------------------------------------------- observing


@dataclass
class _Observer:
    schema: ObjectSchema | None
    changed: bool = False
    fields: dict[str, FieldInfo] = field(default_factory=dict)
    drift: list[Drift] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.schema is not None:
            self.fields = dict(self.schema.fields)
            self.drift = list(self.schema.drift)

    def _note(self, name: str, kind: str, seen: datetime, example: Any,
              kind_type: str | None = None) -> None:
        if any(d.field == name and d.kind == kind for d in self.drift):
            return  # recorded once, with the first example
        self.drift.append(Drift(name, kind, seen, sample_of(example), kind_type))
        self.changed = True

    def fix(self, object_name: str, seen: datetime, datas: Sequence[Mapping[str, Any]]) -> None:
        """The object's first batch: its fields, types and samples, and a suggested mapping."""
        for data in datas:
            for name, value in data.items():
                known = self.fields.get(name)
                if known is None or (known.type == "null" and value is not None):
                    self.fields[name] = FieldInfo(json_type(value), sample_of(value), seen)
        self.schema = ObjectSchema(object_name, self.fields,
                                   suggest_mapping(object_name, self.fields))
        self.changed = True

    def compare(self, seen: datetime, source_id: str, data: Mapping[str, Any]) -> None:
        for name, value in data.items():
            known = self.fields.get(name)
            kind = json_type(value)
            if known is None:
                self._note(name, "added", seen, value, kind)
            elif known.type == "null" and value is not None:
                # Only nulls seen so far: the first value shows the type (no drift).
                self.fields[name] = FieldInfo(kind, sample_of(value), known.first_seen)
                self.changed = True
            elif value is not None and kind != known.type:
                self._note(name, "retyped", seen, value, kind)
        for name in self.fields:
            if name not in data:
                self._note(name, "dropped", seen, source_id)

    def result(self) -> ObjectSchema:
        assert self.schema is not None
        return replace(self.schema, fields=self.fields, drift=tuple(self.drift))


def observe(
    engine: Engine, tenant_id: str, object_name: str,
    batches: Sequence[tuple[datetime, Sequence[Mapping[str, Any]]]],
) -> ObjectSchema | None:
    """Record what these batches show about the object's schema, in arrival order, and
    return the schema to apply them with (None: no record of the object carries data).

    `batches`: per batch, its received time and its pushed records of this object.
    Two readers fixing the same first schema at once (a run and `accrue push process`):
    the second's insert fails on the key, and it observes again against the first's row.
    """
    _check_object(tenant_id, object_name)
    try:
        return _observe(engine, tenant_id, object_name, batches)
    except sa.exc.IntegrityError:
        return _observe(engine, tenant_id, object_name, batches)


def _observe(
    engine: Engine, tenant_id: str, object_name: str,
    batches: Sequence[tuple[datetime, Sequence[Mapping[str, Any]]]],
) -> ObjectSchema | None:
    with engine.begin() as conn:
        stored = _read(conn, tenant_id, object_name, lock=True)
        observer = _Observer(stored)
        for seen, records in batches:
            datas = [(str(r.get("id")), r["data"]) for r in records
                     if r.get("action") in ("create", "update") and isinstance(r.get("data"),
                                                                              dict)]
            if not datas:
                continue
            if observer.schema is None:
                observer.fix(object_name, seen, [data for _, data in datas])
                continue
            for source_id, data in datas:
                observer.compare(seen, source_id, data)
        if observer.schema is None:
            return None
        if observer.changed:
            _write(conn, tenant_id, observer.result(), new=stored is None)
        return observer.result()


# --------------------------------------------------------------------------- the admin


def _accepted(schema: ObjectSchema) -> ObjectSchema:
    """The schema with its drift accepted: fields added, dropped and retyped as seen."""
    fields = dict(schema.fields)
    mapping = dict(schema.mapping)
    added = [d for d in schema.drift if d.kind == "added"]
    for drift in schema.drift:
        if drift.kind == "dropped":
            fields.pop(drift.field, None)
            mapping.pop(drift.field, None)
        else:
            fields[drift.field] = FieldInfo(drift.type or "null", drift.example,
                                            drift.first_seen)
    used = {c for c in mapping.values() if c}
    for name, column in suggest_mapping(schema.object_name, [d.field for d in added]).items():
        mapping[name] = column if column not in used else None
    return replace(schema, fields=fields, mapping=mapping, drift=(), accepted_at=utcnow())


def _accept_stored(conn: Connection, tenant_id: str, object_name: str,
                   missing: str) -> ObjectSchema:
    """The stored schema (locked for the transaction) with its drift accepted."""
    _check_object(tenant_id, object_name)
    stored = _read(conn, tenant_id, object_name, lock=True)
    if stored is None:
        raise SchemaError(f"no {object_name} has been pushed yet: {missing}")
    return _accepted(stored)


def accept_drift(engine: Engine, tenant_id: str, object_name: str) -> ObjectSchema:
    """Accept the drift seen so far: new fields join the schema (with a suggested column if
    one is free), dropped ones leave it, retyped ones take the new type; applied from the
    next page read."""
    with engine.begin() as conn:
        accepted = _accept_stored(conn, tenant_id, object_name, "nothing to accept")
        _write(conn, tenant_id, accepted, new=False)
    return accepted


def mapping_problems(schema: ObjectSchema, mapping: Mapping[str, str | None]) -> list[str]:
    """Why a mapping cannot be saved for this schema (empty: it can)."""
    columns = {c.name for c in COMMON_OBJECTS[schema.object_name]}
    problems = [f"{name!r} is no field of the pushed {schema.object_name}s"
                for name in mapping if name not in schema.fields]
    problems += [f"{schema.object_name} has no column {column!r}"
                 for column in mapping.values() if column is not None and column not in columns]
    chosen = [c for c in mapping.values() if c]
    problems += [f"column {column!r} is fed by more than one field"
                 for column in sorted({c for c in chosen if chosen.count(c) > 1})]
    return problems


def save_mapping(
    engine: Engine, tenant_id: str, object_name: str, mapping: Mapping[str, str | None]
) -> ObjectSchema:
    """The admin's mapping (field -> column, None for raw only; a field left out keeps its
    column), accepting the drift seen so far. SchemaError says what is wrong."""
    with engine.begin() as conn:
        accepted = _accept_stored(conn, tenant_id, object_name, "push one first")
        merged = {**accepted.mapping, **{k: (v or None) for k, v in mapping.items()}}
        problems = mapping_problems(accepted, merged)
        if problems:
            raise SchemaError("; ".join(problems))
        saved = replace(accepted, mapping=merged)
        _write(conn, tenant_id, saved, new=False)
    return saved
