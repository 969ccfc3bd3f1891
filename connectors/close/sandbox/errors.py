"""Close's error answers: a status and a JSON body (`error`, `errors`, `field-errors`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ApiError(Exception):
    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def bad_request(message: str, **field_errors: str) -> ApiError:
    return ApiError(400, {"error": message, "errors": [message] if message else [],
                          "field-errors": field_errors})
