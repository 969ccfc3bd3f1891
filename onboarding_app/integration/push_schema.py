"""The Schema page of a push tenant: what its pushed objects look like, and their mapping.

Per object (accrue.push.schema): the fields the first push fixed, with their JSON type and
a sample; the common-model column each field feeds (a select per field, the suggested
column preselected, "raw only" for none); and the drift seen since (fields added, dropped
or retyped), held back until the admin accepts it. Saving a mapping accepts the drift seen
so far, as accrue.push.schema.save_mapping does. The tenant is the logged-in admin's;
the object comes from the URL and must be a common-model object (else 404).
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.wrappers import Response

from accrue.push import schema
from connectors.common_model import COMMON_OBJECTS
from onboarding_app import audit
from onboarding_app.connection import crm
from onboarding_app.extensions import warehouse
from onboarding_app.forms import ActionForm
from onboarding_app.integration import bp
from onboarding_app.integration.push import push_tenant

FIELD_PREFIX = "map:"  # the mapping form's select for field F is named "map:F"


def _render(tenant_id: str, status: int = 200, error: dict[str, str] | None = None,
            ) -> tuple[str, int]:
    schemas = schema.load(warehouse.engine, tenant_id)
    objects = [{
        "schema": found,
        "label": crm.OBJECT_LABELS.get(name, name),
        "columns": [c.name for c in COMMON_OBJECTS[name]],
        "suggested": schema.suggest_mapping(name, list(found.fields)),
    } for name, found in sorted(schemas.items(), key=lambda i: list(COMMON_OBJECTS).index(i[0]))]
    return render_template("integration/push_schema.html", form=ActionForm(),
                           objects=objects, error=error or {}), status


def _object(object_name: str) -> str:
    if object_name not in COMMON_OBJECTS:
        abort(404)
    return object_name


@bp.get("/push/schema")
def push_schema_page() -> ResponseReturnValue:
    return _render(push_tenant())


@bp.post("/push/schema/<object_name>/mapping")
def push_schema_save(object_name: str) -> ResponseReturnValue:
    ActionForm().validate_on_submit()  # CSRFProtect has already refused a bad token
    tenant_id = push_tenant()
    name = _object(object_name)
    mapping: dict[str, Any] = {key[len(FIELD_PREFIX):]: value or None
                               for key, value in request.form.items()
                               if key.startswith(FIELD_PREFIX)}
    try:
        schema.save_mapping(warehouse.engine, tenant_id, name, mapping)
    except schema.SchemaError as exc:
        return _render(tenant_id, 400, {name: str(exc)})
    audit.record(warehouse.engine, "push.mapping_saved",
                 detail={"object": name, "mapping": mapping})
    flash(f"Mapping of {crm.OBJECT_LABELS.get(name, name).lower()} saved: it applies to the "
          "records applied from now on.", "success")
    return _back(name)


@bp.post("/push/schema/<object_name>/accept")
def push_schema_accept(object_name: str) -> ResponseReturnValue:
    ActionForm().validate_on_submit()
    tenant_id = push_tenant()
    name = _object(object_name)
    try:
        schema.accept_drift(warehouse.engine, tenant_id, name)
    except schema.SchemaError as exc:
        return _render(tenant_id, 400, {name: str(exc)})
    audit.record(warehouse.engine, "push.drift_accepted", detail={"object": name})
    flash("Changes accepted: new fields join the schema (mapped where a column fits), "
          "dropped ones leave it.", "success")
    return _back(name)


def _back(object_name: str) -> Response:
    return redirect(url_for("integration.push_schema_page", _anchor=f"object-{object_name}"))
