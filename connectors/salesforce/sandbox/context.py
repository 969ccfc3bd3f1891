"""What every sandbox endpoint shares: the request's context, JSON answers and bodies.

Kept apart from the app (`server.py`) so the endpoint groups (`rest_endpoints.py`,
`auth_endpoints.py`, `admin_endpoints.py`) and the fault hooks import it without the app.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from werkzeug.wrappers import Request, Response

from .errors import ApiError

if TYPE_CHECKING:
    from .sandbox import SalesforceSandbox

JSON_TYPE = "application/json;charset=UTF-8"

BeforeHook = Callable[["RequestContext"], Response | None]
AfterHook = Callable[["RequestContext", Response], Response | None]


@dataclass
class RequestContext:
    """What the pipeline knows about a request; hooks may read and annotate it."""

    request: Request
    sandbox: SalesforceSandbox
    endpoint: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    api_usage: tuple[int, int] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return str(self.args.get("version") or "59.0")

    @property
    def is_rest(self) -> bool:
        return bool(self.endpoint and self.endpoint.startswith("rest."))


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response; `body` may already be JSON text (query pages are built as text)."""
    text = body if isinstance(body, str) else json.dumps(body)
    return Response(text, status=status, content_type=JSON_TYPE, headers=headers)


def error_response(error: ApiError) -> Response:
    return json_response([error.as_item()], error.status)


class Endpoints:
    """Base of the endpoint groups: the sandbox they serve and a request's JSON body."""

    sandbox: SalesforceSandbox

    @staticmethod
    def body(ctx: RequestContext) -> Any:
        raw = ctx.request.get_data(cache=True)
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise ApiError(400, "JSON_PARSER_ERROR", f"Unexpected character in request body: "
                                                     f"{error}") from None
