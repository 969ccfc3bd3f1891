"""The agent's mapping file: where to push, what to read, and how columns become fields.

TOML, not YAML: `tomllib` is in Python's standard library (nothing to install on the
customer's server), it has comments, and its values are typed without YAML's surprises
(`no` read as false, `0123` as octal, `1_000` as a number). Example (docs/push-api.md):

    [push]
    url = "https://accrue.example.com"        # the Accrue server
    tenant = "stark-demo"
    client_id = "pc_..."
    secret_env = "ACCRUE_PUSH_SECRET"         # or secret_file = "/etc/accrue/push.secret"

    [source]
    database_url_env = "C2CRM_DATABASE_URL"   # or database_url = "...", or exports = "dir"

    [[objects]]
    object = "opportunity"                    # a common-model object
    table = "c2_deals"                        # or files = "deals-*.csv" (exports)
    id = "deal_no"
    updated_at = "changed_on"                 # incremental reads; without: compare snapshots
    deleted_flag = "is_removed"               # a truthy value is a delete
    deletes_by_absence = false                # true: an id no longer there is a delete
    fields = { title = "name", value = "amount" }
    extra = ["region"]                        # pushed under its own name (kept in raw)

Everything is checked before anything is read or sent; every problem is named with the
file and object it concerns (`MappingError`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors.common_model import COMMON_OBJECTS

MAX_BATCH = 1000  # the push API's limit per request
DEFAULT_BATCH = 500
_PUSH_KEYS = frozenset({"url", "tenant", "client_id", "secret_env", "secret_file",
                        "batch_size", "timeout_seconds", "max_attempts"})
_SOURCE_KEYS = frozenset({"database_url", "database_url_env", "exports", "timezone",
                          "decimal", "date_order"})
_OBJECT_KEYS = frozenset({"object", "table", "files", "id", "updated_at", "deleted_flag",
                          "deletes_by_absence", "fields", "extra"})


class MappingError(ValueError):
    """A mapping file that cannot be used; the message says what to change."""


@dataclass(frozen=True)
class ObjectMapping:
    """One common object read from one table (or one kind of export file)."""

    object: str
    id: str
    fields: Mapping[str, str]  # source column -> common field
    table: str | None = None
    files: str | None = None  # a glob inside the exports folder
    updated_at: str | None = None
    deleted_flag: str | None = None
    deletes_by_absence: bool = False
    extra: tuple[str, ...] = ()

    def columns(self) -> list[str]:
        """Every source column the mapping reads (each once, id first)."""
        wanted = [self.id, self.updated_at, self.deleted_flag, *self.fields, *self.extra]
        return list(dict.fromkeys(c for c in wanted if c))

    @property
    def snapshot(self) -> bool:
        """Without an updated-at column each run reads everything and pushes what differs."""
        return self.updated_at is None


@dataclass(frozen=True)
class AgentConfig:
    path: Path
    url: str
    tenant: str
    client_id: str
    secret_env: str | None
    secret_file: Path | None
    objects: tuple[ObjectMapping, ...]
    database_url: str | None = None
    database_url_env: str | None = None
    exports: Path | None = None
    timezone: str = "UTC"
    decimal: str | None = None
    date_order: str | None = None
    batch_size: int = DEFAULT_BATCH
    timeout_seconds: float = 30.0
    max_attempts: int = 8
    checkpoint: Path = field(default_factory=Path)

    @property
    def endpoint(self) -> str:
        return f"{self.url.rstrip('/')}/v1/push/{self.tenant}/records"


def _fail(path: Path, where: str, message: str) -> MappingError:
    return MappingError(f"{path}: {where}: {message}")


def _table(data: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _fail(path, where, "must be a table of settings")
    return data


def _string(data: Mapping[str, Any], key: str, path: Path, where: str,
            *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise _fail(path, where, f"'{key}' is missing")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, where, f"'{key}' must be a non-empty string")
    return value.strip()


def _unknown(data: Mapping[str, Any], known: frozenset[str], path: Path, where: str) -> None:
    extra = sorted(set(data) - known)
    if extra:
        raise _fail(path, where, f"unknown setting(s) {', '.join(extra)}; known: "
                    f"{', '.join(sorted(known))}")


def _object(data: Any, index: int, path: Path, exports: bool) -> ObjectMapping:
    where = f"[[objects]] #{index + 1}"
    data = _table(data, path, where)
    name = _string(data, "object", path, where, required=True)
    assert name is not None
    where = f"object {name!r}"
    _unknown(data, _OBJECT_KEYS, path, where)
    if name not in COMMON_OBJECTS:
        raise _fail(path, where, f"not a common object; use one of {', '.join(COMMON_OBJECTS)}")
    source_key = "files" if exports else "table"
    other = "table" if exports else "files"
    if data.get(other) is not None:
        raise _fail(path, where, f"'{other}' does not apply to a "
                    f"{'folder of exports' if exports else 'database'} source; use "
                    f"'{source_key}'")
    source = _string(data, source_key, path, where, required=True)
    id_column = _string(data, "id", path, where, required=True)
    assert id_column is not None
    fields = data.get("fields", {})
    if not isinstance(fields, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
        raise _fail(path, where, "'fields' must map source columns to common fields "
                    '(e.g. fields = { title = "name" })')
    columns = {c.name for c in COMMON_OBJECTS[name]}
    unknown = sorted(v for v in fields.values() if v not in columns)
    if unknown:
        raise _fail(path, where, f"{', '.join(unknown)} is no field of {name}; its fields: "
                    f"{', '.join(sorted(columns))} (list other columns under 'extra')")
    targets = list(fields.values())
    twice = sorted({t for t in targets if targets.count(t) > 1})
    if twice:
        raise _fail(path, where, f"two columns map to {', '.join(twice)}")
    extra = data.get("extra", [])
    if not isinstance(extra, list) or not all(isinstance(e, str) and e for e in extra):
        raise _fail(path, where, "'extra' must be a list of column names")
    clash = sorted(set(extra) & columns)
    if clash:
        raise _fail(path, where, f"extra column(s) {', '.join(clash)} are named like common "
                    "fields; map them under 'fields' instead")
    absence = data.get("deletes_by_absence", False)
    if not isinstance(absence, bool):
        raise _fail(path, where, "'deletes_by_absence' must be true or false")
    return ObjectMapping(
        object=name, id=id_column, fields=dict(fields),
        table=None if exports else source, files=source if exports else None,
        updated_at=_string(data, "updated_at", path, where),
        deleted_flag=_string(data, "deleted_flag", path, where),
        deletes_by_absence=absence, extra=tuple(extra))


def _number(data: Mapping[str, Any], key: str, default: float, low: float, high: float,
            path: Path, kind: type = int) -> Any:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            kind is int and not isinstance(value, int)) or not low <= value <= high:
        raise _fail(path, "[push]", f"'{key}' must be a{'n integer' if kind is int else ' number'}"
                    f" from {low:g} to {high:g}")
    return value


def parse(text: str, path: Path) -> AgentConfig:
    """A mapping file's text as a checked configuration (`path` names it in errors and
    anchors relative paths)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"{path}: not valid TOML: {exc}") from None
    _unknown(document, frozenset({"push", "source", "objects", "checkpoint"}), path, "top level")
    push = _table(document.get("push"), path, "[push]")
    _unknown(push, _PUSH_KEYS, path, "[push]")
    url = _string(push, "url", path, "[push]", required=True)
    assert url is not None
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise _fail(path, "[push]", f"url {url!r} must be http(s)://host[:port]")
    secret_env = _string(push, "secret_env", path, "[push]")
    secret_file = _string(push, "secret_file", path, "[push]")
    if (secret_env is None) == (secret_file is None):
        raise _fail(path, "[push]", "give exactly one of 'secret_env' (the name of an "
                    "environment variable) or 'secret_file' (a file only you can read); the "
                    "secret itself never goes in this file or on the command line")
    base = path.parent
    source = _table(document.get("source"), path, "[source]")
    _unknown(source, _SOURCE_KEYS, path, "[source]")
    kinds = [k for k in ("database_url", "database_url_env", "exports") if source.get(k)]
    if len(kinds) != 1:
        raise _fail(path, "[source]", "give exactly one of 'database_url', "
                    "'database_url_env' (when the URL holds a password) or 'exports' (a folder)")
    exports = _string(source, "exports", path, "[source]")
    if source.get("decimal") not in (None, ".", ","):
        raise _fail(path, "[source]", "'decimal' is \".\" or \",\" (the exports' decimal mark)")
    if source.get("date_order") not in (None, "MDY", "DMY", "YMD"):
        raise _fail(path, "[source]", "'date_order' is MDY, DMY or YMD (how exports write dates)")
    objects_data = document.get("objects")
    if not isinstance(objects_data, list) or not objects_data:
        raise _fail(path, "[[objects]]", "list at least one object to push")
    objects = [_object(o, i, path, exports is not None) for i, o in enumerate(objects_data)]
    names = [o.object for o in objects]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _fail(path, "[[objects]]", f"{', '.join(twice)} listed twice")
    order = list(COMMON_OBJECTS)  # parents before children
    objects.sort(key=lambda o: order.index(o.object))
    checkpoint = document.get("checkpoint", f"{path.stem}.checkpoint.json")
    if not isinstance(checkpoint, str) or not checkpoint:
        raise _fail(path, "checkpoint", "must be a file path")
    return AgentConfig(
        path=path, url=url, tenant=_string(push, "tenant", path, "[push]", required=True) or "",
        client_id=_string(push, "client_id", path, "[push]", required=True) or "",
        secret_env=secret_env, secret_file=base / secret_file if secret_file else None,
        objects=tuple(objects),
        database_url=_string(source, "database_url", path, "[source]"),
        database_url_env=_string(source, "database_url_env", path, "[source]"),
        exports=base / exports if exports else None,
        timezone=_string(source, "timezone", path, "[source]") or "UTC",
        decimal=_string(source, "decimal", path, "[source]"),
        date_order=_string(source, "date_order", path, "[source]"),
        batch_size=_number(push, "batch_size", DEFAULT_BATCH, 1, MAX_BATCH, path),
        timeout_seconds=_number(push, "timeout_seconds", 30.0, 1, 600, path, float),
        max_attempts=_number(push, "max_attempts", 8, 1, 100, path),
        checkpoint=base / checkpoint)


def load(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the mapping file ({exc.strerror})") from None
    return parse(text, path)
