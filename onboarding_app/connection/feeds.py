"""Ways in for a CRM no connector reads (C2CRM, an in-house system): shown in Select CRM
beside the CRMs of the spec catalog, each with its own setup page instead of Provide Details.

A feed is data: its key (the wizard's choice, and the tenant's `crm_type`), what its card
says, the endpoint of its setup page, and `ready`, which says when that page is done (the
wizard then goes on to Review, as for a CRM whose connection passed its test). Adding a
feed is one entry in FEEDS; the Select CRM step, the wizard's gating and the stepper read
them from here and know nothing else about them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from accrue.file_import import uploads
from accrue.file_import.feed import FILE_CRM_TYPE
from accrue.push import PUSH_CRM_TYPE
from accrue.push import credentials as push_credentials
from connectors.common_model import COMMON_OBJECTS


@dataclass(frozen=True)
class Feed:
    key: str  # the Select CRM choice and the tenant's crm_type
    name: str
    blurb: str  # the card's second line: for which CRMs, and what the customer does
    setup_endpoint: str  # the page shown instead of Provide Details
    ready: Callable[[Engine, str], bool]  # its setup is done: the wizard may go on
    # When its records reach Accrue (the status page's "Accrue ..."): a feed runs when it
    # has input waiting, not on the sync frequency a CRM tenant chooses.
    cadence: str = "applies what arrives within a minute"
    # The objects it can bring (the Review page's wording; every common object by default).
    objects: tuple[str, ...] = tuple(COMMON_OBJECTS)


def _push_ready(engine: Engine, tenant_id: str) -> bool:
    """A push tenant is set up once it has a live secret (it may push from then on)."""
    return any(c.retired_at is None
               for c in push_credentials.list_credentials(engine, tenant_id))


FEEDS: tuple[Feed, ...] = (
    Feed(PUSH_CRM_TYPE, "Push API",
         "For C2CRM and any CRM no connector covers: your system sends its records to "
         "Accrue over HTTPS, signed with a secret you get on the next page.",
         "onboarding.push_setup", _push_ready,
         cadence="applies pushed records within a minute of their arrival"),
    Feed(FILE_CRM_TYPE, "File upload",
         "For any CRM that exports CSV files: upload an export (or a zip of them), check how "
         "its columns map, and Accrue imports it. Upload the next export whenever you like.",
         "uploads.index", uploads.any_confirmed,
         cadence="imports each export within a minute of your confirming its upload"),
)


def get(key: str | None) -> Feed | None:
    """The feed chosen under `key`, or None when `key` is a CRM (or nothing)."""
    return next((feed for feed in FEEDS if feed.key == key), None)
