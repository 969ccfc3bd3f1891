"""Feeds: tenants whose records Accrue receives rather than reads from a CRM.

A tenant's `crm_type` names either a CRM connector (connectors.registry: Accrue logs in
and reads) or a feed (records the customer sends: the push API, file uploads). A feed is
wrapped as a `connectors.base.Connector` over its stored, not yet applied input, so its
records reach the warehouse exactly like a CRM's: the same sync asset and engine
(accrue.sync), checkpoints in the same transaction as the data, sync_run rows, checks,
status page and sensors. What differs is only *when* to run: a CRM is read on the
admin's schedule, a feed when it has unapplied work (`Feed.pending`, asked by the sync
sensor).

Registering a feed is one line in FEEDS (an import path, so this module imports no feed
and a feed's module may import anything it needs).
"""

from __future__ import annotations

import functools
import importlib
from typing import Protocol

from sqlalchemy.engine import Engine

from connectors.base import Connector

# crm_type -> "module:attribute" of the feed object. One line per feed.
FEEDS: dict[str, str] = {
    "push": "accrue.push.feed:PUSH_FEED",  # the push API (accrue.push, F8)
    "file": "accrue.file_import.feed:FILE_FEED",  # uploaded exports (accrue.file_import, F9)
}


class Feed(Protocol):
    """Records Accrue receives for a tenant, read back as a connector."""

    def open(self, engine: Engine, tenant_id: str) -> Connector:
        """A connector whose `read` yields the tenant's unapplied input, with checkpoints."""

    def pending(self, engine: Engine, tenant_id: str) -> bool:
        """Whether the tenant has input not yet applied (cheap: asked every sensor tick)."""


def is_feed(crm_type: str) -> bool:
    return crm_type in FEEDS


@functools.cache
def feed_for(crm_type: str) -> Feed | None:
    """The feed a tenant's `crm_type` names, or None for a CRM connector."""
    path = FEEDS.get(crm_type)
    if path is None:
        return None
    module_name, _, attribute = path.partition(":")
    feed: Feed = getattr(importlib.import_module(module_name), attribute)
    return feed
