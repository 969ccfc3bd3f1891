"""File upload (issue 13, F9): the admin uploads a CRM export, confirms its mapping and mode,
and the pipelines' file feed imports it (accrue.file_import.feed).

Pages: the upload form, the mapping (proposed, or remembered for this header shape, so
not asked again), and the result (queued, importing, done with its quarantined lines).
Admins of a tenant fed by files only; every upload is looked up in the admin's own tenant.

The upload streams: Werkzeug spools the request's file part to a temporary file as it
arrives and it is copied to our own in chunks, never read into memory whole; past
FILE_UPLOAD_MAX_BYTES the request is refused with a 413 saying the limit. A file that
cannot be read (not a CSV, empty, binary, a zip that unpacks too large) is refused with
the reason before anything is stored; one that can is stored whole, with its proposal.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from flask import (
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import secure_filename

from accrue import tenants
from accrue.file_import import uploads
from accrue.file_import.feed import FILE_CRM_TYPE
from accrue.file_import.mapping import FileMapping, mapping_from_choices, targets
from accrue.file_import.proposal import propose, remember_mapping
from accrue.file_import.reading import FileImportError, csv_files
from accrue.schema import UPLOAD_MODES
from accrue.warehouse import Warehouse
from onboarding_app import audit, store
from onboarding_app.connection import crm
from onboarding_app.extensions import warehouse
from onboarding_app.security import current_user, login_required
from onboarding_app.uploads import bp

TARGET_LABELS = {"source_id": "Record id", "modified_at": "Last modified"}


def _limit(name: str) -> int:
    """FILE_UPLOAD_MAX_BYTES or FILE_UPLOAD_MAX_UNZIPPED_BYTES (onboarding_app.settings)."""
    return int(current_app.config[name])


@bp.url_value_preprocessor
def _upload_limit(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    """The upload's own size limit, set before anything reads the form (Flask runs URL
    preprocessors before every before-request function, the CSRF check's included)."""
    if endpoint == "uploads.upload":
        request.max_content_length = _limit("FILE_UPLOAD_MAX_BYTES")


@bp.before_request
@login_required
def _admins_of_file_tenants() -> ResponseReturnValue | None:
    """Logged out: the login page. Not an admin: 403. A tenant read from a CRM: a page
    saying so (its records come from the CRM, not from files)."""
    user = current_user()
    if not user.is_admin:
        abort(403)
    if tenants.require_tenant(warehouse.engine, user.tenant_id).crm_type != FILE_CRM_TYPE:
        return render_template(
            "error.html", title="Your records come from your CRM", back=None,
            message="File uploads are for accounts fed by exported files. Choose "
                    "“File upload” in the CRM setup to use them."), 200
    return None


@bp.app_context_processor
def _menu() -> dict[str, Any]:
    """`uploads_menu()`: whether the header links the uploads (an admin of a file tenant)."""

    def uploads_menu() -> bool:
        user = g.get("user")
        return bool(user is not None and user.is_admin and tenants.require_tenant(
            warehouse.engine, user.tenant_id).crm_type == FILE_CRM_TYPE)

    return {"uploads_menu": uploads_menu}


def _objects() -> list[tuple[str, str]]:
    """What a file may hold: the objects the tenant's sync reads (an optional one, such as
    activities, once its admin switched it on: the feed would never read it otherwise)."""
    tenant = tenants.require_tenant(warehouse.engine, current_user().tenant_id)
    return [(name, crm.OBJECT_LABELS.get(name, name)) for name in tenant.synced_objects()]


def _in_setup() -> bool:
    return not store.load_wizard(warehouse.engine, current_user().tenant_id).complete


def _form(status: int = 200, **context: Any) -> tuple[str, int]:
    if "object_name" not in context:
        context["object_name"] = request.form.get("object") or "opportunity"
    return render_template(
        "uploads/new.html", objects=_objects(), in_setup=_in_setup(),
        max_mb=_limit("FILE_UPLOAD_MAX_BYTES") // (1024 * 1024),
        recent=uploads.recent(warehouse.engine, current_user().tenant_id), **context,
    ), status


@bp.get("/")
def index() -> ResponseReturnValue:
    return _form()


@bp.post("/")
def upload() -> ResponseReturnValue:
    sent = request.files.get("file")
    object_name = request.form.get("object", "")
    if object_name not in dict(_objects()):
        return _form(400, error="Choose what the file holds.")
    if sent is None or not sent.filename:
        return _form(400, error="Choose a CSV export, or a zip of them, to upload.")
    member = request.form.get("member") or None
    filename = secure_filename(sent.filename) or "upload.csv"
    folder = Path(tempfile.mkdtemp(prefix="accrue-upload-"))
    try:
        path = folder / filename
        sent.save(path)  # copied in chunks from Werkzeug's spooled file
        if path.stat().st_size == 0:
            raise FileImportError(f"{filename}: the file is empty")
        uploads.check_archive(path, _limit("FILE_UPLOAD_MAX_UNZIPPED_BYTES"))
        members = [f.member for f in csv_files(path) if f.member]
        try:
            proposal = propose(Warehouse(warehouse.engine), current_user().tenant_id,
                               object_name, path, member=member)
        except FileImportError as exc:
            if len(members) > 1 and (member is None or member not in members):
                return _form(400, error=f"{exc}. Choose the CSV below and upload the zip "
                             "again.", members=members, object_name=object_name)
            raise
        if len(proposal.headers) < 2:
            raise FileImportError(
                f"{proposal.file.name}: one column only. Is it a CSV export? Its values must "
                "be separated by commas, semicolons, tabs or |")
        if proposal.rows == 0:
            raise FileImportError(f"{proposal.file.name}: no rows under its header")
        saved = uploads.store(
            warehouse.engine, current_user().tenant_id, object_name, path,
            filename=filename, member=proposal.file.member,
            header_signature=proposal.signature, proposal=proposal.as_json(),
            uploaded_by=current_user().id)
    except FileImportError as exc:
        return _form(400, error=f"This file cannot be imported: {exc}.",
                     object_name=object_name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    audit.record(warehouse.engine, "file_upload.stored",
                 detail={"upload": saved.id, "object": object_name, "bytes": saved.size_bytes})
    return redirect(url_for("uploads.show", upload_id=saved.id))


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(_: RequestEntityTooLarge) -> ResponseReturnValue:
    """Refused before the form was read (the CSRF check reads it first, so no view ran and
    no one is logged in yet): a page that says the limit and what to do, nothing else."""
    limit_mb = _limit("FILE_UPLOAD_MAX_BYTES") // (1024 * 1024)
    return render_template(
        "error.html", title="The file is too large", back=url_for("uploads.index"),
        message=f"The file is larger than {limit_mb} MB, the most one upload may hold. "
                "Zip it, or export fewer columns or a shorter period, and upload it again."
    ), 413


def _upload_or_404(upload_id: int) -> uploads.Upload:
    found = uploads.get(warehouse.engine, current_user().tenant_id, upload_id)
    if found is None:
        abort(404)
    return found


def _choices(upload: uploads.Upload) -> list[tuple[str, str]]:
    return [("", "(not imported)")] + [
        (name, TARGET_LABELS.get(name, name)) for name in targets(upload.object_name)]


def _chosen(column: dict[str, Any]) -> str:
    """The select's value for a proposal's column (its first target: 'stage+is_won' feeds
    the stage, and the outcome through the value map)."""
    return str(column.get("target") or "").split("+")[0]


@bp.get("/<row_id:upload_id>")
def show(upload_id: int) -> ResponseReturnValue:
    upload = _upload_or_404(upload_id)
    if upload.status != "draft":
        return render_template("uploads/result.html", upload=upload, in_setup=_in_setup())
    return _mapping_page(upload)


def _mapping_page(upload: uploads.Upload, status: int = 200, **context: Any) -> tuple[str, int]:
    proposal = upload.proposal
    editing = bool(request.values.get("edit")) or not proposal.get("remembered")
    return render_template(
        "uploads/mapping.html", upload=upload, proposal=proposal, choices=_choices(upload),
        chosen={c["header"]: _chosen(c) for c in proposal["columns"]}, editing=editing,
        modes=UPLOAD_MODES, object_label=crm.OBJECT_LABELS.get(upload.object_name),
        **context), status


@bp.post("/<row_id:upload_id>")
def confirm(upload_id: int) -> ResponseReturnValue:
    upload = _upload_or_404(upload_id)
    if upload.status != "draft":
        return redirect(url_for("uploads.show", upload_id=upload.id))
    proposal = upload.proposal
    headers: list[str] = list(proposal["headers"])
    base = FileMapping.from_json(proposal["mapping"]) if proposal.get("mapping") else None
    mode = request.form.get("mode", "")
    if mode not in UPLOAD_MODES:
        return _mapping_page(upload, 400, error="Choose a full snapshot or changes only.")
    try:
        if request.form.get("edit") or base is None:
            choices = {h: request.form.get(f"col-{i}", "") for i, h in enumerate(headers)}
            mapping = mapping_from_choices(upload.object_name, choices, base)
        else:
            mapping = base
        problems = mapping.problems(headers)
        if problems:
            raise ValueError("; ".join(problems))
    except ValueError as exc:
        return _mapping_page(upload, 400, error=f"The mapping cannot be used: {exc}.")
    tenant_id = current_user().tenant_id
    remember_mapping(warehouse.engine, tenant_id, headers, mapping)
    if uploads.confirm(warehouse.engine, tenant_id, upload.id, mapping, mode):
        audit.record(warehouse.engine, "file_upload.queued",
                     detail={"upload": upload.id, "mode": mode})
        flash("Queued: " + ("it is imported once you finish the setup." if _in_setup() else
                            "the import starts within a minute.")
              + " This page shows its progress.", "success")
    return redirect(url_for("uploads.show", upload_id=upload.id))


@bp.post("/<row_id:upload_id>/discard")
def discard(upload_id: int) -> ResponseReturnValue:
    upload = _upload_or_404(upload_id)
    if uploads.discard(warehouse.engine, current_user().tenant_id, upload.id):
        audit.record(warehouse.engine, "file_upload.discarded", detail={"upload": upload.id})
        flash("The upload was discarded; nothing was imported.", "success")
    return redirect(url_for("uploads.index"))
