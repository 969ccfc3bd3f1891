"""Sending a batch to the push API: signed, retried where retrying can help, and the
server's refusals turned into messages a person can act on.

Retried (tenacity, exponential backoff with jitter, `max_attempts` in all): a connection
error or timeout, any 5xx, and 429 — after the server's `Retry-After` when it sends one.
Each attempt is signed afresh (the timestamp must be within five minutes of the server's
clock) with the same `webhook-id`, so an attempt the server stored before its answer was
lost comes back as a replay (200), never as a second copy. Not retried: 400 (the batch is
wrong: the server's per-record errors are in the message), 401 (credentials), 413, 415.

The secret is held by `PushClient` only; it is never logged, put in an exception or shown
(`repr` hides it).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from standardwebhooks.webhooks import Webhook
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

logger = logging.getLogger(__name__)

CLIENT_ID_HEADER = "Accrue-Client-Id"
MAX_WAIT_SECONDS = 120.0
SHOWN_ERRORS = 20


class PushRefused(RuntimeError):
    """The server refused the batch or the credentials: retrying would not help."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RetryablePushError(RuntimeError):
    reason: str
    retry_after: float | None = None

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True)
class Ack:
    status: int  # 202 accepted, 200 a replay of an accepted batch
    receipt_id: Any
    attempts: int

    @property
    def replay(self) -> bool:
        return self.status == 200


def describe_refusal(status: int, body: Any) -> str:
    """The server's answer as lines: its message, then each bad record and why."""
    if not isinstance(body, dict):
        return f"HTTP {status} from the push API"
    lines = [f"HTTP {status}: {body.get('message') or body.get('error') or 'refused'}"]
    errors = body.get("errors") or []
    for error in errors[:SHOWN_ERRORS]:
        if isinstance(error, dict):
            which = f"record {error.get('index')}" + (
                f" (id {error['id']})" if "id" in error else "")
            lines.append(f"  {which}: {'; '.join(map(str, error.get('problems', [])))}")
    if len(errors) > SHOWN_ERRORS:
        lines.append(f"  ... and {len(errors) - SHOWN_ERRORS} more")
    if status == 401:
        lines.append("Check [push] url, tenant and client_id in the mapping file and the "
                     "secret the agent reads (secret_env or secret_file); a rotated secret "
                     "may have been retired.")
    return "\n".join(lines)


def _wait(state: RetryCallState) -> float:
    """Retry-After when the server said; else 1, 2, 4 ... s with jitter, at most 2 min."""
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    if isinstance(error, RetryablePushError) and error.retry_after is not None:
        return min(MAX_WAIT_SECONDS, error.retry_after)
    backoff = min(MAX_WAIT_SECONDS, 2.0 ** (state.attempt_number - 1))
    return backoff * (0.5 + random.random() / 2)


def _before_sleep(state: RetryCallState) -> None:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    wait = state.next_action.sleep if state.next_action else 0.0
    logger.warning("push attempt %d failed (%s); retrying in %.1f s",
                   state.attempt_number, error, wait)


@dataclass
class PushClient:
    endpoint: str
    client_id: str
    secret: str = field(repr=False)
    timeout: float = 30.0
    max_attempts: int = 8
    session: Any = field(default_factory=requests.Session, repr=False)
    sleep: Any = field(default=None, repr=False)  # tests replace time.sleep

    def _post_once(self, webhook_id: str, body: str) -> Ack:
        now = datetime.now(UTC).replace(microsecond=0)
        signature = Webhook(self.secret).sign(webhook_id, now, body)
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
            CLIENT_ID_HEADER: self.client_id,
            "Content-Type": "application/json",
            "User-Agent": "accrue-agent",
        }
        try:
            response = self.session.post(self.endpoint, data=body.encode("utf-8"),
                                         headers=headers, timeout=self.timeout)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RetryablePushError(f"cannot reach {self.endpoint}: "
                                     f"{type(exc).__name__}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = None
        status = response.status_code
        if status in (200, 202):
            receipt = answer.get("receipt_id") if isinstance(answer, dict) else None
            return Ack(status, receipt, 0)
        if status == 429 or status >= 500:
            retry_after = response.headers.get("Retry-After", "")
            retry_after_s = float(retry_after) if retry_after.isdigit() else None
            raise RetryablePushError(f"HTTP {status}", retry_after_s)
        raise PushRefused(status, describe_refusal(status, answer))

    def post(self, webhook_id: str, body: str) -> Ack:
        """Send one signed body until it is acknowledged; PushRefused or, after every
        attempt, RetryablePushError otherwise."""
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts), wait=_wait,
            retry=retry_if_exception_type(RetryablePushError),
            before_sleep=_before_sleep, reraise=True,
            **({"sleep": self.sleep} if self.sleep is not None else {}))
        for attempt in retrying:
            with attempt:
                ack = self._post_once(webhook_id, body)
                return Ack(ack.status, ack.receipt_id, attempt.retry_state.attempt_number)
        raise AssertionError("unreachable")  # pragma: no cover - reraise=True raises

    def push(self, webhook_id: str, records: Sequence[dict[str, Any]]) -> Ack:
        return self.post(webhook_id, json.dumps({"records": list(records)},
                                                separators=(",", ":")))

    def probe(self) -> int:
        """Send an empty, signed batch: 400 (empty) means the credentials were accepted
        (the server checks them first) and nothing is stored; 401 means they were not."""
        try:
            self._post_once(f"probe_{random.getrandbits(64):016x}", '{"records":[]}')
        except PushRefused as exc:
            if exc.status == 400:
                return 400
            raise
        return 200
