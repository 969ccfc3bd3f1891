"""One retry policy for every adapter's API calls.

tenacity, exponential backoff with jitter from half a second up to the connection's
ceiling, a fixed number of attempts, a warning before each wait, and the last failure
re-raised for the adapter to put in our words. A wait the server asks for (`Retry-After`)
is honoured up to the same ceiling. What differs between CRMs is passed in: which
failures are worth another attempt, what the server asked for, how a failure reads in
the log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

log = logging.getLogger(__name__)


def _failure(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None


def retrying(
    source: str,
    *,
    is_transient: Callable[[BaseException], bool],
    max_attempts: int,
    max_backoff: float,
    describe: Callable[[BaseException], str] = lambda exc: type(exc).__name__,
    server_wait: Callable[[BaseException, float], float | None] | None = None,
) -> Retrying:
    """A `Retrying` for calls to `source` (the CRM's name, for the log).

    `server_wait(failure, backoff)` returns the wait a failure asks for instead of the
    backoff (say its `Retry-After`), or None to keep the backoff; either is capped at
    `max_backoff`.
    """
    backoff = wait_exponential_jitter(initial=0.5, max=max_backoff)

    def wait(state: RetryCallState) -> float:
        step = float(backoff(state))
        failure = _failure(state)
        asked = server_wait(failure, step) if failure is not None and server_wait else None
        return step if asked is None else min(asked, max_backoff)

    def warn(state: RetryCallState) -> None:
        failure = _failure(state)
        log.warning("%s call failed (attempt %d): %s; retrying in %.1fs", source,
                    state.attempt_number,
                    describe(failure) if failure is not None else "unknown error",
                    state.next_action.sleep if state.next_action else 0.0)

    return Retrying(retry=retry_if_exception(is_transient), wait=wait,
                    stop=stop_after_attempt(max_attempts), before_sleep=warn, reraise=True)
