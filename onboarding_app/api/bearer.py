"""Who is calling the API: the bearer token in the Authorization header, and nothing else.

Not the login cookie (a page open in the browser must not lend its session to a script),
not the URL (URLs end up in proxy logs, browser histories and Referer headers). Every
refusal is a 401 whose JSON says what to do, with the RFC 6750 `WWW-Authenticate` header.
Each token has its own rate limit, counted after it is authenticated.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import current_app, g, jsonify, request
from flask.typing import ResponseReturnValue

from onboarding_app.api.tokens import PREFIX, Refusal, TokenUser, authenticate
from onboarding_app.extensions import limiter, warehouse
from onboarding_app.security import external_url

F = TypeVar("F", bound=Callable[..., Any])
# Query parameters a client might put a token in; refused with advice, never read.
_URL_TOKEN_NAMES = frozenset({"access_token", "token", "api_key", "apikey", "key"})

MISSING = "missing"
IN_URL = "token_in_url"


def _advice(problem: Refusal | str) -> tuple[str, str]:
    """(error code, what to do) for each way a request fails to authenticate."""
    where = external_url("api_tokens.index")
    if problem == MISSING:
        return "missing_token", (f"Send your API token in the header 'Authorization: Bearer "
                                 f"{PREFIX}...'. Create one at {where}.")
    if problem == IN_URL:
        return "token_in_url", (
            "API tokens are accepted only in the Authorization header, never in the URL "
            "(URLs are kept in logs and histories). Treat this token as leaked: revoke it "
            f"at {where} and create a new one.")
    messages = {
        Refusal.MALFORMED: (f"This is not an Accrue API token (they start with {PREFIX} and "
                            f"are 42 characters long). Copy it again, or create a new one at "
                            f"{where}."),
        Refusal.UNKNOWN: ("This token is not valid: it was never issued, or its owner no "
                          "longer has access. Ask your Accrue admin for access, then create "
                          f"a token at {where}."),
        Refusal.REVOKED: f"This token was revoked. Create a new one at {where}.",
        Refusal.EXPIRED: f"This token has expired. Create a new one at {where}.",
    }
    return "invalid_token", messages[cast(Refusal, problem)]


def unauthorized(problem: Refusal | str) -> ResponseReturnValue:
    code, message = _advice(problem)
    response = jsonify(error=code, message=message)
    challenge = 'Bearer realm="Accrue API"'
    if problem != MISSING:
        challenge += ', error="invalid_token"'
    response.headers["WWW-Authenticate"] = challenge
    return response, 401


def _token_in_url() -> bool:
    return (any(name.lower() in _URL_TOKEN_NAMES for name in request.args)
            or PREFIX.encode() in request.query_string)


def _presented_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _rate() -> str:
    return str(current_app.config["API_RATE_LIMIT"])


def _rate_key() -> str:
    return f"api-token:{cast(TokenUser, g.api_token).token_id}"


def token_required(view: F) -> F:
    """Authenticate the bearer token, then count the call against that token's limit."""
    limited = limiter.limit(_rate, key_func=_rate_key)(view)

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if _token_in_url():
            return unauthorized(IN_URL)
        token = _presented_token()
        if token is None:
            return unauthorized(MISSING)
        result = authenticate(warehouse.engine, token)
        if isinstance(result, Refusal):
            return unauthorized(result)
        g.api_token = result
        return limited(*args, **kwargs)

    return cast(F, wrapped)


def api_user() -> TokenUser:
    return cast(TokenUser, g.api_token)
