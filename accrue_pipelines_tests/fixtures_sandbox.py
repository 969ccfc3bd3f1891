"""Fixtures for the local Salesforce sandbox (loaded as a pytest plugin by conftest.py).

`sf_sandbox` is a fresh, seeded org per test (120 opportunities, 50-record
pages so that paging is exercised) served from a background thread;
`sf_client` is the real simple-salesforce client logged in to it with
username, password and security token. The org clock is a `SandboxClock`
(`sf_sandbox.sandbox.clock`) that tests can move forward instead of sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from simple_salesforce import Salesforce

from connectors.salesforce.sandbox import RunningSandbox, running_sandbox
from connectors.salesforce.transport import sandbox_session

SANDBOX_SEED = 7
SANDBOX_OPPORTUNITIES = 120
SANDBOX_PAGE_SIZE = 50


class SandboxClock:
    """Real time plus an adjustable offset: time moves on, and tests can jump ahead."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


def start_sandbox(path: Path, **options: object) -> RunningSandbox:
    """A seeded sandbox on a free port with a controllable clock (options override)."""
    settings: dict[str, object] = {
        "seed": SANDBOX_SEED,
        "n_opportunities": SANDBOX_OPPORTUNITIES,
        "page_size": SANDBOX_PAGE_SIZE,
        "clock": SandboxClock(),
    }
    settings.update(options)
    return running_sandbox(str(path), **settings)  # type: ignore[arg-type]


def login(sandbox: RunningSandbox) -> Salesforce:
    """Password + security-token login, exactly as a user would do it."""
    return Salesforce(
        username=sandbox.username,
        password=sandbox.password,
        security_token=sandbox.security_token,
        session=sandbox_session(sandbox.url),
    )


@pytest.fixture
def sf_sandbox(tmp_path: Path) -> Iterator[RunningSandbox]:
    """A running, seeded sandbox whose state lives in this test's tmp_path."""
    sandbox = start_sandbox(tmp_path / "salesforce-sandbox.db")
    try:
        yield sandbox
    finally:
        sandbox.stop()


@pytest.fixture
def sf_client(sf_sandbox: RunningSandbox) -> Salesforce:
    """A logged-in simple-salesforce client for `sf_sandbox`."""
    return login(sf_sandbox)
