"""Fixtures for the tests every registered CRM runs (loaded as a pytest plugin by conftest.py).

`crm` is parametrized over every CRM whose spec names a sandbox harness
(connectors/sandbox_kit/harness.py), so a CRM that registers runs these tests with no code
of its own; `crm_org` is a seeded org of that CRM, paging at CRM_PAGE_SIZE.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import registry
from connectors.sandbox_kit.harness import RunningCrmSandbox
from connectors.spec import ConnectorSpec, load

SANDBOXED = [spec for spec in registry.specs() if spec.sandbox]
CRM_OPPORTUNITIES = 40
CRM_PAGE_SIZE = 7  # odd and small: every object spans several pages


@pytest.fixture(params=SANDBOXED, ids=[spec.key for spec in SANDBOXED])
def crm(request: pytest.FixtureRequest) -> ConnectorSpec:
    spec: ConnectorSpec = request.param
    return spec


@pytest.fixture
def crm_org(crm: ConnectorSpec, tmp_path: Path) -> Iterator[RunningCrmSandbox]:
    """A seeded org of this CRM, its state in this test's tmp_path."""
    harness = load(str(crm.sandbox))()
    running = harness.start(tmp_path / f"{crm.key}-org.db", opportunities=CRM_OPPORTUNITIES,
                            seed=7, page_size=CRM_PAGE_SIZE)
    try:
        yield running
    finally:
        running.stop()
