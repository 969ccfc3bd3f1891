"""The one error type every layer raises, shaped like a Salesforce REST error."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failure the client must see as `[{"message", "errorCode", "fields"?}]`.

    Raised deep inside parsing, validation or storage so that every layer can
    report a Salesforce-shaped error without knowing about HTTP.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: list[str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields

    def as_item(self) -> dict[str, Any]:
        """One entry of a REST error list (the order Salesforce uses)."""
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = list(self.fields)
        return item

    def as_result_error(self) -> dict[str, Any]:
        """One entry of `errors` in a per-record result (collections, SOAP)."""
        return {
            "statusCode": self.code,
            "message": self.message,
            "fields": list(self.fields or []),
        }


def not_found(message: str = "The requested resource does not exist") -> ApiError:
    """Salesforce's generic 404; used for unknown routes, ids and objects alike."""
    return ApiError(404, "NOT_FOUND", message)


def request_limit_exceeded() -> ApiError:
    """The daily-quota refusal; the metered limit and the injected fault share it."""
    return ApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")


def unexpected_error(error_id: str) -> ApiError:
    """Salesforce's 500 for a server-side failure (real bugs and injected faults alike)."""
    return ApiError(500, "UNKNOWN_EXCEPTION",
                    "An unexpected error occurred. Please include this ErrorId if you contact "
                    f"support: {error_id}")


def server_unavailable() -> ApiError:
    """Salesforce's 503 while an instance is down for maintenance or overloaded."""
    return ApiError(503, "SERVER_UNAVAILABLE",
                    "The server is temporarily unable to handle the request. Try again later.")
