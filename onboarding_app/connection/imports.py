"""The optional imports: one switch per optional common object, kept on the tenant.

The wizard's Review step and the Integration settings page show the same switches and
save them the same way (`save`): on the tenant (`tenant.optional_objects`), which is what
the pipelines read, and in the wizard's answers, so the Review and Complete pages show
the choice. The pipelines never read the wizard's state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.engine import Engine

from accrue import tenants
from onboarding_app import store

# Switch (the form field's name) -> the common object it imports.
# Every optional object has its switch (a test holds the two equal).
OPTIONAL_IMPORTS: dict[str, str] = {"activities": "activity"}


def chosen(imports: Mapping[str, Any]) -> list[str]:
    """The optional objects switched on in a form's or the wizard's answers."""
    return [obj for switch, obj in OPTIONAL_IMPORTS.items() if imports.get(switch)]


def switches(tenant: tenants.Tenant) -> dict[str, bool]:
    """The tenant's choice as the switches' values."""
    return {switch: obj in tenant.optional_objects for switch, obj in OPTIONAL_IMPORTS.items()}


def save(engine: Engine, tenant_id: str, imports: Mapping[str, Any],
         wizard: store.Wizard | None = None) -> tenants.Tenant:
    """Store the switches on the tenant (what the syncs obey) and in the wizard's answers.

    With `wizard`, its data is updated in place and the caller saves it (the Review step
    saves its page in one write); without, the saved answers are updated here.
    """
    tenant = tenants.set_optional_objects(engine, tenant_id, chosen(imports))
    values = switches(tenant)
    if wizard is None:
        loaded = store.load_wizard(engine, tenant_id)
        loaded.data["review"] = {**loaded.section("review"), "imports": values}
        store.save_wizard(engine, tenant_id, data=loaded.data)
    else:
        wizard.data["review"] = {**wizard.section("review"), "imports": values}
    return tenant


def split(objects: Iterable[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]],
                                                         dict[str, Mapping[str, Any]]]:
    """The CRM's objects counted at setup: (always imported, {switch: optional object})."""
    by_object = {obj: switch for switch, obj in OPTIONAL_IMPORTS.items()}
    always: list[Mapping[str, Any]] = []
    optional: dict[str, Mapping[str, Any]] = {}
    for entry in objects:
        switch = by_object.get(str(entry.get("name")))
        if switch is None:
            always.append(entry)
        else:
            optional[switch] = entry
    return always, optional


def imported(objects: Iterable[Mapping[str, Any]],
             imports: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The objects that will be imported: every one that is not optional, and those chosen."""
    always, optional = split(objects)
    return always + [entry for switch, entry in optional.items() if imports.get(switch)]
