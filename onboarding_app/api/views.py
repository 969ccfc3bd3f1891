"""The API's endpoints: what the results pages show, as JSON, cut to the token's person.

Each endpoint builds the person's `Scope` with `scope_for` and reads through `queries`, the
same functions as the pages: there is no second copy of the scoping to drift. Another
tenant's deal, or a deal the person may not see, is the same 404 as one that does not exist.
Lists come a page at a time (`limit`, and the `next_cursor` of the previous page).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from flask import Response, abort, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from accrue.schema import OPPORTUNITY_KINDS
from onboarding_app.api import bp
from onboarding_app.api.bearer import api_user, token_required
from onboarding_app.extensions import warehouse
from onboarding_app.results import queries
from onboarding_app.results.scope import Scope, scope_for

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")
# Internal columns a BI tool has no use for (the tenant is the token's own).
_HIDDEN = frozenset({"tenant_id"})


def _scope() -> Scope:
    return scope_for(warehouse.engine, api_user().user)


def _json_value(value: Any) -> Any:
    """ISO 8601 dates and times; NaN and infinities as null (JSON has neither)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_value(v) for k, v in row.items() if k not in _HIDDEN}


def _bad_request(message: str) -> ResponseReturnValue:
    return jsonify(error="bad_request", message=message), 400


def _encode(document: dict[str, Any]) -> str:
    raw = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str) -> dict[str, Any]:
    try:
        document = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError("not a cursor") from exc
    if not isinstance(document, dict):
        raise ValueError("not a cursor")
    return document


def encode_cursor(sort: str, key: queries.DealKey) -> str:
    return _encode({"sort": sort, "value": _json_value(key.value), "id": key.opportunity_id})


def decode_cursor(cursor: str, sort: str) -> queries.DealKey:
    """The position a deals cursor names; ValueError if it is not one of ours for this sort.

    Deals page by keyset (the last row's sort value and id): a deal added or removed
    between two calls neither repeats nor hides another.
    """
    document = _decode(cursor)
    if document.get("sort") != sort:
        raise ValueError("a cursor of another sort order")
    value, opportunity_id = document.get("value"), document.get("id")
    if not isinstance(opportunity_id, str):
        raise ValueError("not a cursor")
    if value is not None:
        if sort == "close_date":
            value = date.fromisoformat(str(value))
        elif sort == "name":
            if not isinstance(value, str):
                raise ValueError("not a cursor")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError("not a cursor")
    return queries.DealKey(value, opportunity_id)


def _offset(cursor: str | None, listing: str) -> int:
    """Where a page of a listing other than deals starts. Those tables are replaced whole
    by each analytics run, so a position in them is simply a row count."""
    if not cursor:
        return 0
    document = _decode(cursor)
    offset = document.get("offset")
    if document.get("list") != listing or isinstance(offset, bool) or not isinstance(
            offset, int) or offset < 0:
        raise ValueError("not a cursor")
    return offset


def _limit() -> int:
    raw = request.args.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


BAD_CURSOR = ("cursor: pass the next_cursor of the previous page as it is, with the same "
              "sort")


def _float_arg(name: str) -> float | None:
    raw = request.args.get(name)
    if not raw:
        return None
    value = float(raw)  # ValueError for a non-number
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a number")
    return value


def _offset_page(listing: str, read: Callable[[int, int], list[dict[str, Any]]]
                 ) -> ResponseReturnValue:
    """A page of `listing` by row count: `limit` and the previous page's `next_cursor`."""
    try:
        limit = _limit()
    except ValueError as exc:
        return _bad_request(str(exc))
    try:
        offset = _offset(request.args.get("cursor"), listing)
    except ValueError:
        return _bad_request(BAD_CURSOR)
    rows = read(limit + 1, offset)
    page, more = rows[:limit], len(rows) > limit
    next_cursor = _encode({"list": listing, "offset": offset + limit}) if more else None
    return jsonify(data=[_record(r) for r in page], next_cursor=next_cursor, limit=limit)


@bp.get("/deals")
@token_required
def deals() -> ResponseReturnValue:
    """Open deals with their recommendation, filtered and sorted as on the deals page
    (`seller`, `stage`, `min_uplift`, `sort`), a page at a time (`limit`, `cursor`)."""
    sort = request.args.get("sort", "uplift")
    if sort not in queries.DEAL_SORT_KEYS:
        return _bad_request(f"sort must be one of {', '.join(queries.DEAL_SORT_KEYS)}")
    try:
        limit = _limit()
    except ValueError as exc:
        return _bad_request(str(exc))
    try:
        min_uplift = _float_arg("min_uplift")
    except ValueError:
        return _bad_request("min_uplift must be a number")
    cursor = request.args.get("cursor")
    try:
        after = decode_cursor(cursor, sort) if cursor else None
    except ValueError:
        return _bad_request(BAD_CURSOR)
    # One row more than asked says whether there is a next page without counting.
    rows = queries.deals(warehouse.engine, _scope(), seller=request.args.get("seller") or None,
                         stage=request.args.get("stage") or None, min_uplift=min_uplift,
                         sort=sort, limit=limit + 1, after=after)
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(sort, queries.deal_key(page[-1], sort)) if more else None
    return jsonify(data=[_record(r) for r in page], next_cursor=next_cursor, limit=limit,
                   sort=sort)


@bp.get("/deals/<opportunity_id>")
@token_required
def deal(opportunity_id: str) -> ResponseReturnValue:
    """One deal with its recommended price per line item."""
    scope = _scope()
    row = queries.deal(warehouse.engine, scope, opportunity_id)
    if row is None:
        abort(404)  # not there, another tenant's, or not this person's: the same answer
    record = _record(row)
    record["lines"] = [_record(line) for line in
                       queries.deal_lines(warehouse.engine, scope, opportunity_id)]
    return jsonify(data=record)


@bp.get("/opportunities")
@token_required
def opportunities() -> ResponseReturnValue:
    """Cross-sell, upsell, win-back and stalled deals, highest expected value first
    (`kind` one of them), a page at a time (`limit`, `cursor`)."""
    kind = request.args.get("kind") or None
    if kind is not None and kind not in OPPORTUNITY_KINDS:
        return _bad_request(f"kind must be one of {', '.join(OPPORTUNITY_KINDS)}")
    scope = _scope()
    return _offset_page("opportunities", lambda limit, offset: queries.opportunities(
        warehouse.engine, scope, kind=kind, limit=limit, offset=offset))


@bp.get("/team")
@token_required
def team() -> ResponseReturnValue:
    """Seller-months the person may see, newest first (`month` YYYY-MM for one); each row
    carries the team's figures. A page at a time (`limit`, `cursor`)."""
    month = request.args.get("month") or None
    if month is not None and not MONTH.fullmatch(month):
        return _bad_request("month must be YYYY-MM")
    scope = _scope()
    return _offset_page("team", lambda limit, offset: queries.team_metrics(
        warehouse.engine, scope, month=month, limit=limit, offset=offset))


@bp.get("/freshness")
@token_required
def freshness() -> ResponseReturnValue:
    """When the tenant's data was last synced and its results last computed."""
    found = queries.freshness(warehouse.engine, api_user().user.tenant_id)
    return jsonify(data=_record(found))


@bp.after_request
def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _http_error(exc: HTTPException) -> ResponseReturnValue:
    """JSON for every error of the API, whatever the client's Accept header says."""
    code = exc.code or 500
    messages = {404: "There is no such deal, or it is not yours to see.",
                429: "Too many requests with this token: wait a minute and slow down."}
    return jsonify(error=exc.name.lower().replace(" ", "_"),
                   message=messages.get(code, exc.description or exc.name)), code


# By code as well: the app's handlers for a code would otherwise come before a class handler.
for _code in (400, 404, 405, 413, 429):
    bp.register_error_handler(_code, _http_error)
bp.register_error_handler(HTTPException, _http_error)
