"""A Close sandbox served on 127.0.0.1 from a background thread (the kit's `ServedSandbox`).

The `Date` header of every answer is the sandbox's clock, as a real server's is its
own: the adapter reads the organization's time from it (the event log's 30 days are
counted on that clock), so tests that move the clock move what the adapter sees.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from connectors.close.sandbox.server import API_PREFIX, CloseApp, SandboxSettings
from connectors.close.sandbox.store import OPPORTUNITY_CUSTOM_FIELD_KIND, CloseStore
from connectors.sandbox_kit.server import ServedSandbox

ORGANIZATION_ID = "orga_SandboxAccrueCloseOrganization0000000000000"
DEFAULT_API_KEY = "api_sandbox_close_key_0123456789"
# The organization's opportunity pipeline: (label, type).
STATUSES = (("Qualification", "active"), ("Demo", "active"), ("Proposal", "active"),
            ("Negotiation", "active"), ("Won", "won"), ("Lost", "lost"))
# Lead custom fields: what Close orgs add to hold a company's profile.
LEAD_CUSTOM_FIELDS = (("Industry", "text"), ("Employees", "number"),
                      ("Annual Revenue", "number"), ("Account Type", "choices"),
                      ("Lead Owner", "user"))
# Opportunity custom fields: "List Price", the deal at list price in currency units (Close
# keeps no line items), as orgs that track list prices add it. Stored as their own kind.
OPPORTUNITY_CUSTOM_FIELDS = (("List Price", "number"),)


def custom_field_id(name: str) -> str:
    """A custom field's id (`cf_…`); a lead or opportunity carries its value as
    `custom.<id>`."""
    return f"cf_{''.join(c for c in name.lower() if c.isalnum()):0<43}"


def prepare_org(store: CloseStore, api_key: str) -> None:
    """The organization's settings every sandbox has: key, statuses, custom fields (a
    seeded org brings its own statuses first)."""
    store.add_api_key(api_key)
    if store.count(OPPORTUNITY_CUSTOM_FIELD_KIND) == 0:  # an org made before it had one too
        stamp = store.now()
        store.load(OPPORTUNITY_CUSTOM_FIELD_KIND, [
            {"id": custom_field_id(name), "name": name, "type": kind, "date_created": stamp,
             "date_updated": stamp, "organization_id": ORGANIZATION_ID}
            for name, kind in OPPORTUNITY_CUSTOM_FIELDS])
    if store.meta("organization_id"):
        return
    store.set_meta("organization_id", ORGANIZATION_ID)
    store.set_meta("organization_name", "Accrue Sandbox")
    store.set_meta("currency", "USD")
    stamp = store.now()
    if store.count("status") == 0:
        store.load("status", [
            # Ids in pipeline order: the store lists statuses by id.
            {"id": f"stat_{index:02d}{label.lower():0<41}"[:48], "label": label, "type": kind,
             "date_created": stamp, "date_updated": stamp, "organization_id": ORGANIZATION_ID}
            for index, (label, kind) in enumerate(STATUSES)])
    store.load("custom_field", [
        {"id": custom_field_id(name), "name": name, "type": kind,
         "date_created": stamp, "date_updated": stamp, "organization_id": ORGANIZATION_ID}
        for name, kind in LEAD_CUSTOM_FIELDS])


class ServedOrg(ServedSandbox[CloseStore, CloseApp]):
    """The kit's served sandbox, with the URL `closeio_api.API` is given."""

    @property
    def api_url(self) -> str:
        return f"{self.url}{API_PREFIX}"


def serve(path: Path, *, settings: SandboxSettings | None = None,
          clock: Callable[[], datetime] | None = None, host: str = "127.0.0.1", port: int = 0,
          faults: Mapping[str, Any] | None = None,
          seed: Callable[[CloseStore], None] | None = None) -> ServedOrg:
    """Open (or create) the organization at `path` and serve it; `seed` fills a new one."""
    settings = settings or SandboxSettings(api_key=DEFAULT_API_KEY)
    store = CloseStore(path, clock)
    if seed is not None and store.is_empty():
        seed(store)
    prepare_org(store, settings.api_key)
    return ServedOrg.start(store, CloseApp(store, settings), faults=faults, host=host,
                           port=port, name="close-sandbox")
