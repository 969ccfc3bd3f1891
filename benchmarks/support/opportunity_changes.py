"""Changes to the sandbox org's opportunities through its REST API (sObject Collections),
the way a CRM user's edits reach it between two syncs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

COLLECTION_SIZE = 200  # sObject Collections' per-call maximum


@contextmanager
def sandbox_client(url: str, credentials: Mapping[str, str]) -> Iterator[Any]:
    """A simple_salesforce client logged in to the sandbox at `url`."""
    from simple_salesforce import Salesforce

    from connectors.salesforce.transport import sandbox_session

    session = sandbox_session(url)
    try:
        yield Salesforce(session=session, username=credentials["username"],
                         password=credentials["password"],
                         security_token=credentials["security_token"])
    finally:
        session.close()


def opportunity_ids(sf: Any) -> list[str]:
    return sorted(r["Id"] for r in sf.query_all("SELECT Id FROM Opportunity")["records"])


def change_opportunities(sf: Any, ids: Sequence[str], round_number: int,
                         description: str) -> list[Any]:
    """Move each opportunity's stage on (by its place and the round) and set its
    description; the failures the org reported. `Amount` is not touched: the sandbox
    (like Salesforce) derives it from line items."""
    from connectors.salesforce.sandbox.standard_objects import STAGES

    stages = list(STAGES)
    failures: list[Any] = []
    for start in range(0, len(ids), COLLECTION_SIZE):
        records = [{"attributes": {"type": "Opportunity"}, "Id": record_id,
                    "StageName": stages[(start + offset + round_number) % len(stages)],
                    "Description": description}
                   for offset, record_id in enumerate(ids[start:start + COLLECTION_SIZE])]
        results = sf.restful("composite/sobjects", method="PATCH",
                             json={"allOrNone": False, "records": records})
        failures.extend(r for r in results if not r.get("success"))
    return failures
