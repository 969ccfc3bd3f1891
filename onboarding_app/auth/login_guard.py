"""Failed logins slow down whoever fails, never the account's owner elsewhere.

A hard block per account let anyone lock an admin out with six wrong passwords. Here
only failures count, per account *and* client address: after FREE_FAILURES the next
attempt from that client for that account waits 1, 2, 4 … seconds (at most
MAX_WAIT_SECONDS), and a success clears the count. The owner, from their own address,
is never held back by a stranger; a guesser from one address slows down exponentially,
and the per-address limit (LOGIN_LIMIT_PER_IP) caps how many accounts one address tries.

Counts live in the rate limiter's storage (RATELIMIT_STORAGE_URI: memory locally, Redis
when several processes serve), so every process sees the same counts.
"""

from __future__ import annotations

import hashlib
import math
import time

from flask_limiter.util import get_remote_address

from onboarding_app.extensions import limiter
from onboarding_app.store import normalise_email

FREE_FAILURES = 5
# The first wait after the free failures; each further failure doubles it.
FIRST_WAIT_SECONDS = 1
MAX_WAIT_SECONDS = 15 * 60
# Failures older than this are forgotten: a typo last week does not slow today's login.
FAILURE_MEMORY_SECONDS = 60 * 60


def _key(kind: str, email: str) -> str:
    """Per account and client; the e-mail is hashed, so the store holds no address."""
    account = hashlib.sha256(normalise_email(email).encode()).hexdigest()[:32]
    return f"login-{kind}:{account}:{get_remote_address()}"


def wait_seconds(email: str) -> int:
    """How long this client must wait before trying this account again (0: go ahead)."""
    key = _key("wait", email)
    if limiter.storage.get(key) <= 0:
        return 0
    return max(1, math.ceil(limiter.storage.get_expiry(key) - time.time()))


def record_failure(email: str) -> int:
    """Count a failed attempt; the wait it imposes on the next one (0 while still free)."""
    failures = limiter.storage.incr(_key("fail", email), FAILURE_MEMORY_SECONDS)
    if failures < FREE_FAILURES:
        return 0
    wait = min(FIRST_WAIT_SECONDS * 2 ** (failures - FREE_FAILURES), MAX_WAIT_SECONDS)
    limiter.storage.incr(_key("wait", email), wait)
    return wait


def record_success(email: str) -> None:
    for kind in ("fail", "wait"):
        limiter.storage.clear(_key(kind, email))
