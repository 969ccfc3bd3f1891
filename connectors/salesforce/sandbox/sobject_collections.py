"""Writes of many records in one call: sObject Collections (create, update, delete) and
SOAP undelete. Each record is written in its own savepoint, so one failure undoes only
that record; with allOrNone, any failure rolls all of them back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from .errors import ApiError
from .ids import normalize_id
from .writes import WriteContext

if TYPE_CHECKING:
    from .sandbox import SalesforceSandbox

MAX_COLLECTION_RECORDS = 200
_ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was "
               "using AllOrNone header",
    "fields": [],
}


class _RollBack(Exception):
    """Unwinds an allOrNone collection call after its results are known."""


def _check_size(items: list[Any]) -> None:
    if len(items) > MAX_COLLECTION_RECORDS:
        raise ApiError(400, "EXCEEDED_ID_LIMIT",
                       f"Maximum number of records exceeded. Limit is "
                       f"{MAX_COLLECTION_RECORDS}")


def undelete(sandbox: SalesforceSandbox, ids: list[str], *,
             user_id: str | None = None) -> list[dict[str, Any]]:
    """SOAP-style results, one per id (undelete is never all-or-none here)."""
    _check_size(ids)
    results = []
    with sandbox.write(user_id) as ctx:
        for index, record_id in enumerate(ids):
            outcome = in_savepoint(ctx, index, partial(sandbox.writer.undelete, ctx, record_id))
            normalized = normalize_id(record_id)
            if isinstance(outcome, ApiError):
                results.append({"id": normalized, "success": False,
                                "errors": [outcome.as_result_error()]})
            else:
                results.append({"id": normalized, "success": True, "errors": []})
    return results


def in_savepoint(ctx: WriteContext, index: int, action: Callable[[], Any]) -> Any:
    """Run one record's write so that its failure undoes only that record."""
    name = f"rec{index}"
    touched = set(ctx.touched_opportunities)
    ctx.conn.execute(f"SAVEPOINT {name}")
    try:
        result = action()
    except ApiError as error:
        ctx.conn.execute(f"ROLLBACK TO {name}")
        ctx.conn.execute(f"RELEASE {name}")
        ctx.touched_opportunities = touched
        return error
    ctx.conn.execute(f"RELEASE {name}")
    return result


def _collection(sandbox: SalesforceSandbox, user_id: str | None, items: list[Any],
                all_or_none: bool, action: Callable[[WriteContext, Any], str]
                ) -> list[dict[str, Any]]:
    _check_size(items)
    results: list[dict[str, Any]] = []
    try:
        with sandbox.write(user_id) as ctx:
            for index, item in enumerate(items):
                outcome = in_savepoint(ctx, index, partial(action, ctx, item))
                if isinstance(outcome, ApiError):
                    failed: dict[str, Any] = {"success": False,
                                              "errors": [outcome.as_result_error()]}
                    if isinstance(item, str):
                        failed = {"id": item, **failed}
                    results.append(failed)
                else:
                    results.append({"id": outcome, "success": True, "errors": []})
            if all_or_none and any(not r["success"] for r in results):
                raise _RollBack
    except _RollBack:
        results = [
            r if not r["success"] else {"id": None, "success": False,
                                        "errors": [dict(_ROLLED_BACK)]}
            for r in results
        ]
    return results


def record_type(item: Any) -> str:
    if not isinstance(item, Mapping):
        raise ApiError(400, "JSON_PARSER_ERROR", "Each record must be a JSON object")
    attributes = item.get("attributes")
    type_ = attributes.get("type") if isinstance(attributes, Mapping) else None
    if not isinstance(type_, str) or not type_:
        raise ApiError(400, "INVALID_TYPE",
                       "Each record must carry attributes.type with its sObject type")
    return type_


def create(sandbox: SalesforceSandbox, records: list[Any], *, all_or_none: bool = False,
           user_id: str | None = None) -> list[dict[str, Any]]:
    def create_one(ctx: WriteContext, item: Any) -> str:
        return sandbox.writer.create(ctx, record_type(item), item)
    return _collection(sandbox, user_id, records, all_or_none, create_one)


def update(sandbox: SalesforceSandbox, records: list[Any], *, all_or_none: bool = False,
           user_id: str | None = None) -> list[dict[str, Any]]:
    def update_one(ctx: WriteContext, item: Any) -> str:
        type_ = record_type(item)
        fields = {k: v for k, v in item.items() if k.lower() != "id"}
        record_id = item.get("Id") or item.get("id")
        if not isinstance(record_id, str):
            raise ApiError(400, "MISSING_ARGUMENT", "Id not specified in an update call")
        sandbox.writer.update(ctx, type_, record_id, fields)
        return normalize_id(record_id) or record_id
    return _collection(sandbox, user_id, records, all_or_none, update_one)


def delete(sandbox: SalesforceSandbox, ids: list[str], *, all_or_none: bool = False,
           user_id: str | None = None) -> list[dict[str, Any]]:
    def delete_one(ctx: WriteContext, record_id: str) -> str:
        normalized = normalize_id(record_id)
        obj = sandbox.schema.by_prefix(normalized[:3]) if normalized else None
        if normalized is None or obj is None:
            raise ApiError(400, "MALFORMED_ID", f"malformed id {record_id}")
        try:
            sandbox.writer.delete(ctx, obj.name, normalized)
        except ApiError as error:
            if error.code == "NOT_FOUND":
                raise ApiError(400, "INVALID_CROSS_REFERENCE_KEY",
                               "invalid cross reference id") from None
            raise
        return normalized
    return _collection(sandbox, user_id, ids, all_or_none, delete_one)
