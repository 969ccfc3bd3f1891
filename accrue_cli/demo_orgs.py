"""The demo's orgs and tenants: one seeded tenant per CRM and one org per CRM to sign up with.

`accrue demo` registers the tenants through the same registry the concierge uses and reads
their first data and first recommendations from the warehouse, as the status page does.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from accrue import config, tenants

# A frequency an admin would pick (accrue.schema.SYNC_FREQUENCIES_MINUTES); 5 was the old
# demo value, upgraded on start so an older ACCRUE_HOME gets the same demo.
DEMO_SYNC_FREQUENCY_MINUTES = 15
OLD_DEMO_SYNC_FREQUENCY_MINUTES = 5
SCALE_ENV = "ACCRUE_DEMO_OPPORTUNITIES_SCALE"
MIN_OPPORTUNITIES = 10


@dataclass(frozen=True)
class DemoTenant:
    """A sandbox org of the demo, and the tenant synced from it (or, for `signup` orgs,
    the org an admin who signs up in the concierge connects)."""

    tenant_id: str
    name: str
    port: int
    opportunities: int
    crm_type: str
    signup: bool = False


# The demo tenants' names and sizes, given to the registered CRMs in the registry's order.
_TENANT_NAMES = (("acme-demo", "Acme Industrial (demo)", 2000),
                 ("globex-demo", "Globex Software (demo)", 1200),
                 ("initech-demo", "Initech Services (demo)", 1000),
                 ("umbrella-demo", "Umbrella Supplies (demo)", 800),
                 ("hooli-demo", "Hooli Devices (demo)", 800))
SIGNUP_OPPORTUNITIES = 800
FIRST_PORT = 8701


def _demo_orgs() -> tuple[tuple[DemoTenant, ...], tuple[DemoTenant, ...]]:
    """(demo tenants, sign-up orgs): one of each per registered CRM that has a sandbox."""
    from connectors import registry

    crms = [spec.key for spec in registry.specs() if spec.sandbox]
    tenants_ = tuple(DemoTenant(tid, name, FIRST_PORT + i, opportunities, crm)
                     for i, (crm, (tid, name, opportunities)) in enumerate(
                         zip(crms, _TENANT_NAMES, strict=False)))
    signups = tuple(DemoTenant(f"signup-{crm}", f"Org for a new sign-up ({crm})",
                               FIRST_PORT + len(tenants_) + i, SIGNUP_OPPORTUNITIES, crm,
                               signup=True) for i, crm in enumerate(crms))
    return tenants_, signups


DEMO_TENANTS, SIGNUP_ORGS = _demo_orgs()
ORGS = (*DEMO_TENANTS, *SIGNUP_ORGS)  # ports ACCRUE_SANDBOX_PORT_1..N, in this order


def sandbox_connection(crm_type: str, url: str) -> tuple[dict[str, str], dict[str, Any]]:
    """What a tenant connected to a demo sandbox of this CRM stores (its default logins)."""
    from connectors import registry
    from connectors.spec import load

    harness = load(str(registry.spec(crm_type).sandbox))()
    secrets, crm_config = harness.connection_at(url)
    return dict(secrets), dict(crm_config)


def opportunities_scale() -> float:
    """ACCRUE_DEMO_OPPORTUNITIES_SCALE: smaller seeds so tests start the whole demo quickly."""
    raw = os.environ.get(SCALE_ENV, "").strip()
    try:
        scale = float(raw) if raw else 1.0
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale > 0):
        raise SystemExit(
            f"{SCALE_ENV}={raw!r} is not a positive number: use e.g. 0.05 for a small demo, "
            "or unset it for the full one"
        )
    return scale


def register_demo_tenants(engine: Engine, ports: dict[str, int]) -> None:
    """Register the demo tenants once; point their credentials at this run's sandbox ports."""
    from connectors import registry

    for demo in DEMO_TENANTS:
        existing = tenants.get_tenant(engine, demo.tenant_id)
        if existing is None:
            # Activities on where the CRM has them: the demo shows them in stalled deals.
            offered = registry.spec(demo.crm_type).objects
            tenants.add_tenant(engine, demo.tenant_id, demo.name, demo.crm_type,
                               sync_frequency_minutes=DEMO_SYNC_FREQUENCY_MINUTES,
                               optional_objects=tuple(o for o in ("activity",) if o in offered))
        elif existing.sync_frequency_minutes == OLD_DEMO_SYNC_FREQUENCY_MINUTES:
            tenants.set_sync_frequency(engine, demo.tenant_id, DEMO_SYNC_FREQUENCY_MINUTES)
        url = f"http://127.0.0.1:{ports[demo.tenant_id]}"
        secrets, crm_config = sandbox_connection(demo.crm_type, url)
        tenants.save_credentials(engine, demo.tenant_id, demo.crm_type, secrets, crm_config)


def signup_logins(urls: dict[str, str]) -> str:
    """One line per CRM: the sign-up org's logins an admin types in the concierge."""
    from connectors import registry

    lines = []
    for org in SIGNUP_ORGS:
        secrets, crm_config = sandbox_connection(org.crm_type, urls[org.tenant_id])
        spec = registry.spec(org.crm_type)
        method = spec.auth(crm_config.get("auth"))
        typed = {**crm_config, **secrets}
        shown = []
        for setup in spec.fields_for(method.key):
            value = str(typed.get(setup.name, ""))
            if not value:
                continue
            if len(value) > 60 or "\n" in value:  # a key to paste: kept in a file
                path = config.accrue_home() / f"sandbox-{spec.key}-{setup.name}.txt"
                path.write_text(value)
                path.chmod(0o600)
                value = f"paste the contents of {path}"
            shown.append(f"{setup.label}: {value}")
        lines.append(f"  {spec.name} ({method.label}): {', '.join(shown)}")
    return "\n".join(lines)


def tenant_data(engine: Engine, tenant_id: str) -> tuple[int, int] | None:
    """(objects, live records) once every object the tenant syncs has synced once, else None.

    A sync that succeeded, as on the concierge's status page: the saved state alone is
    written after the first page, while a large object is still being read.
    """
    from accrue.warehouse import Warehouse

    store = Warehouse(engine)
    health = store.sync_health(tenant_id)
    objects = tenants.require_tenant(engine, tenant_id).synced_objects()
    if any(health.get(name, {}).get("last_success_at") is None for name in objects):
        return None
    return len(objects), sum(row["live_rows"] for row in store.summary(tenant_id, objects))


def recommendation_count(engine: Engine, tenant_id: str) -> int:
    """Open deals with a recommended price (the status page's count)."""
    from accrue.onboarding_notify import priced_deals

    return priced_deals(engine, tenant_id)[0]

