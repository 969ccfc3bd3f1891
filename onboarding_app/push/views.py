"""`POST /v1/push/<tenant>/records`: verify, validate, commit to the inbox, then answer.

* 401 for every authentication failure alike (unknown tenant, unknown client id, bad or
  missing signature, timestamp outside ±5 minutes), with the same work done in each case,
  so the answer does not reveal whether the tenant exists.
* 400 naming each bad record and why; nothing of such a batch is stored.
* 413 over PUSH_MAX_BODY_BYTES; 429 with Retry-After, counted per tenant once authenticated.
* 202 with a receipt once the batch is committed (accrue.push.inbox); a replayed
  `webhook-id` gets 200 and the first receipt, and is not stored again.
Signatures are checked by the `standardwebhooks` library, on the raw body.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from flask_limiter.errors import RateLimitExceeded
from standardwebhooks.webhooks import Webhook
from werkzeug.exceptions import RequestEntityTooLarge

from accrue.push import credentials, inbox
from onboarding_app.extensions import limiter, warehouse
from onboarding_app.push import bp

F = TypeVar("F", bound=Callable[..., Any])
CLIENT_ID_HEADER = "Accrue-Client-Id"
DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024
DEFAULT_RATE_LIMIT = "600 per minute"
# Verified against when no secret is found, so an unknown tenant costs what a known one does.
_DECOY = Webhook("whsec_" + "A" * 43 + "=")
_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def _json_error(code: int, error: str, message: str, **extra: Any) -> ResponseReturnValue:
    return jsonify(error=error, message=message, **extra), code


def _unauthorized() -> ResponseReturnValue:
    return _json_error(
        401, "unauthorized",
        "The push could not be authenticated. Check the URL's tenant, the Accrue-Client-Id "
        "header, the secret you sign with, and that webhook-timestamp is the current Unix "
        "time (within 5 minutes); sign 'webhook-id.webhook-timestamp.body' as Standard "
        "Webhooks describes (v1,<base64 HMAC-SHA256>).")


def _verified(tenant_id: str, body: bytes) -> bool:
    headers = {name: request.headers.get(name, "") for name in _SIGNATURE_HEADERS}
    secrets = credentials.live_secrets(
        warehouse.engine, tenant_id, request.headers.get(CLIENT_ID_HEADER, ""))
    hooks = [Webhook(secret) for secret in secrets] or [_DECOY]
    ok = False
    for hook in hooks:
        try:
            hook.verify(body, headers, json_parse=False)
        except Exception:  # noqa: BLE001 - the library raises several kinds on bad input
            continue
        ok = True
        break
    return ok and bool(secrets)


def _rate() -> str:
    return str(current_app.config.get("PUSH_RATE_LIMIT", DEFAULT_RATE_LIMIT))


def _rate_key() -> str:
    return f"push:{g.push_tenant}"


def _signed(view: F) -> F:
    """Read the body (413 past the limit), verify the sender, then count the push against
    its tenant's rate limit (after authentication: nobody else spends a tenant's budget)."""
    limited = limiter.limit(_rate, key_func=_rate_key)(view)

    @wraps(view)
    def wrapped(tenant_id: str) -> Any:
        request.max_content_length = int(
            current_app.config.get("PUSH_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
        body = request.get_data(cache=False)
        if not _verified(tenant_id, body):
            return _unauthorized()
        if request.mimetype != "application/json":
            return _json_error(415, "unsupported_media_type",
                               "Send the batch as JSON with 'Content-Type: application/json'.")
        g.push_tenant = tenant_id
        g.push_body = body
        return limited(tenant_id)

    return cast(F, wrapped)


@bp.post("/<tenant_id>/records")
@_signed
def push_records(tenant_id: str) -> ResponseReturnValue:
    body: bytes = g.push_body
    try:
        records = inbox.parse_batch(body)
    except inbox.BatchError as exc:
        return jsonify(exc.as_json()), 400
    webhook_id = request.headers["webhook-id"]
    if len(webhook_id) > inbox.WEBHOOK_ID_MAX:
        return _json_error(400, "invalid_batch",
                           f"webhook-id is longer than {inbox.WEBHOOK_ID_MAX} characters")
    receipt = inbox.store(warehouse.engine, tenant_id, webhook_id, body,
                          dict(request.headers), len(records))
    if receipt.duplicate:
        return jsonify(status="duplicate", receipt_id=receipt.id,
                       message="This webhook-id was accepted before; it is not stored again."), 200
    answer: dict[str, Any] = {"status": "accepted", "receipt_id": receipt.id,
                              "records": len(records)}
    unmapped = inbox.unmapped_fields(records)
    if unmapped:
        answer["unmapped_fields"] = unmapped
        answer["message"] = ("Fields that are not columns of Accrue's common model are kept "
                             "whole in each record's raw data, not in a column.")
    return jsonify(answer), 202


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_: RequestEntityTooLarge) -> ResponseReturnValue:
    limit = int(current_app.config.get("PUSH_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES))
    return _json_error(413, "payload_too_large",
                       f"A push may send at most {limit} bytes; split the batch.")


@bp.errorhandler(RateLimitExceeded)
def _too_many(_: RateLimitExceeded) -> ResponseReturnValue:
    retry_after = 60
    current = limiter.current_limit
    if current is not None:
        retry_after = max(1, math.ceil(current.reset_at - time.time()))
    response = jsonify(error="rate_limited",
                       message=f"Too many pushes for this tenant; retry in {retry_after} s.")
    response.headers["Retry-After"] = str(retry_after)
    return response, 429
