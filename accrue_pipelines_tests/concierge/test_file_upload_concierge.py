"""File upload in the concierge (issue 13, F9): upload, mapping, mode, queue, import, result.

The import is run as the pipelines run it: the file feed's connector through the sync
engine (accrue_pipelines_tests/pipelines/test_file_feed_pipeline.py runs it in Dagster)."""

from __future__ import annotations

import io
import re
import zipfile
from html import unescape
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sqlalchemy.engine import Engine

from accrue import tenants
from accrue.file_import import uploads
from accrue.file_import.feed import FILE_CRM_TYPE, FileConnector
from accrue.schema import file_upload, file_upload_chunk, object_table, utcnow
from accrue.sync import sync_object
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    Admin,
    concierge_db_url_fixture,
    location,
    make_app,
)
from onboarding_app import store

EXPORTS = Path(__file__).parents[1] / "file_import_exports"
SELECT = re.compile(r'<select id="(col-\d+)" name="col-\d+"[^>]*>(.*?)</select>', re.S)
SELECTED = re.compile(r'<option value="([^"]*)" selected>')


@pytest.fixture(name="app")
def app_fixture(concierge_db_url: str) -> Flask:
    return make_app(concierge_db_url)


def _engine(app: Flask) -> Engine:
    return app.extensions["accrue_warehouse"]


def _file_admin(app: Flask, crm_type: str = FILE_CRM_TYPE) -> Admin:
    """An admin whose setup is finished (the wizard's own path: the last test)."""
    admin = Admin(app.test_client())
    admin.signup()
    tenants.set_crm_type(_engine(app), admin.tenant_id, crm_type)
    tenants.set_status(_engine(app), admin.tenant_id, "active")
    store.save_wizard(_engine(app), admin.tenant_id, step="complete", completed_at=utcnow())
    return admin


def _upload(admin: Admin, content: bytes, filename: str, object_name: str = "opportunity",
            **fields: str) -> Any:
    data: dict[str, Any] = {"object": object_name, "file": (io.BytesIO(content), filename),
                            **fields}
    return admin.post("/uploads/", data, content_type="multipart/form-data")


def _page(admin: Admin, path: str) -> str:
    response = admin.client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return unescape(response.get_data(as_text=True))


def _proposed(page: str) -> dict[str, str]:
    """The mapping page's selects as a browser would send them."""
    chosen = {}
    for name, options in SELECT.findall(page):
        found = SELECTED.search(options)
        chosen[name] = found.group(1) if found else ""
    return chosen


def _confirm(admin: Admin, path: str, mode: str = "changes",
             change: dict[str, str] | None = None) -> Any:
    page = _page(admin, path)
    data = {"mode": mode}
    if 'name="edit"' in page:
        data.update({"edit": "1", **_proposed(page), **(change or {})})
    return admin.post(path, data)


def _run_feed(app: Flask, tenant_id: str) -> None:
    """What the sync asset does for a file tenant: the feed through the sync engine."""
    engine = _engine(app)
    for object_name in sorted(uploads.open_objects(engine, tenant_id)):
        sync_object(Warehouse(engine), FileConnector(engine, tenant_id), tenant_id, object_name)


def _uploaded(admin: Admin, content: bytes, filename: str, **fields: str) -> str:
    response = _upload(admin, content, filename, **fields)
    assert response.status_code == 302, response.get_data(as_text=True)[:3000]
    return location(response)


def _imported(app: Flask, admin: Admin, path: Path | bytes, filename: str | None = None,
              mode: str = "changes", change: dict[str, str] | None = None) -> str:
    """Upload, confirm and import; the result page."""
    content = path if isinstance(path, bytes) else path.read_bytes()
    where = _uploaded(admin, content, filename or getattr(path, "name", "export.csv"))
    assert location(_confirm(admin, where, mode, change)) == where
    _run_feed(app, admin.tenant_id)
    return _page(admin, where)


def _rows(engine: Engine, tenant_id: str) -> dict[str, dict[str, Any]]:
    table = object_table("opportunity")
    with engine.connect() as conn:
        return {r["source_id"]: dict(r) for r in conn.execute(
            sa.select(table).where(table.c.tenant_id == tenant_id)).mappings()}


def _stored(admin: Admin) -> tuple[int, int]:
    """The admin's tenant's uploads and chunks."""
    engine = _engine(admin.client.application)
    with engine.connect() as conn:
        return tuple(conn.execute(sa.select(sa.func.count()).select_from(t).where(
            t.c.tenant_id == admin.tenant_id)).scalar_one()
            for t in (file_upload, file_upload_chunk))  # type: ignore[return-value]


def _figure(page: str, name: str) -> str:
    found = re.search(rf'id="count-{name}">([^<]*)<', page)
    assert found, f"no {name} count on the page"
    return found.group(1)


def test_an_upload_is_mapped_queued_imported_and_its_bad_lines_shown(database_url: str) -> None:
    app = make_app(database_url)
    admin = _file_admin(app)
    where = _uploaded(admin, (EXPORTS / "salesforce_report.csv").read_bytes(),
                      "salesforce_report.csv")
    page = _page(admin, where)
    # The proposal: samples, the whole-file check with its lines, the selects.
    assert "Check the mapping" in page and "6 rows of Opportunities (deals)" in page
    assert "<code>USD 1,234.56</code>" in page
    assert "1 of 6 will be quarantined" in page and "line 6: 'TBD' is not a number" in page
    assert _proposed(page)["col-0"] == "source_id"  # Opportunity ID
    queued = _confirm(admin, where)
    assert location(queued) == where
    assert "Queued" in _page(admin, where) and 'http-equiv="refresh"' in _page(admin, where)
    _run_feed(app, admin.tenant_id)
    result = _page(admin, where)
    assert "Imported" in result and 'http-equiv="refresh"' not in result
    assert (_figure(result, "rows"), _figure(result, "imported"),
            _figure(result, "quarantined")) == ("6", "4", "2")
    assert "<td>6</td><td>Amount (amount): 'TBD' is not a number</td>" in result
    assert "<td>7</td><td>Close Date (close_date): '31/12/2024'" in result
    assert 'href="/status/"' in result or "/status" in result
    rows = _rows(_engine(app), admin.tenant_id)
    assert rows["0065g00000AbCdEAAV"]["amount"] == 1234.56 and len(rows) == 4
    with _engine(app).connect() as conn:
        status = conn.execute(sa.text("SELECT status FROM sync_run WHERE tenant_id = :t"),
                              {"t": admin.tenant_id}).scalars().all()
    assert status == ["succeeded"]  # the import is a sync run like any other


@pytest.mark.parametrize(("export", "imported", "quarantined"), [
    ("european_export.csv", 4, 0),  # Windows-1252, semicolons, decimal commas
    ("hubspot_deals.csv", 4, 0),
    ("pipedrive_deals.csv", 4, 1),
    ("salesforce_dataloader.csv", 2, 1),
])
def test_every_crms_export_imports_through_the_page(
        app: Flask, export: str, imported: int, quarantined: int) -> None:
    admin = _file_admin(app)
    result = _imported(app, admin, EXPORTS / export)
    assert (_figure(result, "imported"), _figure(result, "quarantined")) == (
        str(imported), str(quarantined))
    assert len(_rows(_engine(app), admin.tenant_id)) == imported


def test_a_zip_with_several_csvs_asks_which_one(app: Flask) -> None:
    admin = _file_admin(app)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("Deals 2024.csv", (EXPORTS / "hubspot_deals.csv").read_text())
        zf.writestr("Deals 2023.csv", "Record ID,Deal Name\n1,Old deal\n")
    asked = _upload(admin, archive.getvalue(), "export.zip")
    page = unescape(asked.get_data(as_text=True))
    assert asked.status_code == 400 and "holds several CSVs" in page
    assert '<option value="Deals 2024.csv">' in page
    assert _stored(admin) == (0, 0)
    where = _uploaded(admin, archive.getvalue(), "export.zip", member="Deals 2024.csv")
    assert "export.zip : Deals 2024.csv" in _page(admin, where)
    _confirm(admin, where)
    _run_feed(app, admin.tenant_id)
    assert _figure(_page(admin, where), "imported") == "4"


def test_a_corrected_mapping_is_remembered_and_the_next_upload_asks_nothing(
        app: Flask) -> None:
    admin = _file_admin(app)
    engine = _engine(app)
    page = _page(admin, _uploaded(admin, (EXPORTS / "hubspot_deals.csv").read_bytes(),
                                  "deals.csv"))
    amount = next(name for name, value in _proposed(page).items() if value == "amount")
    _imported(app, admin, EXPORTS / "hubspot_deals.csv", change={amount: ""})
    assert all(r["amount"] is None for r in _rows(engine, admin.tenant_id).values())
    later = (EXPORTS / "hubspot_deals.csv").read_bytes().replace(b'"5000"', b'"5100"')
    where = _uploaded(admin, later, "deals-later.csv")
    page = _page(admin, where)
    assert 'id="remembered"' in page and "<select id=\"col-" not in page
    assert location(admin.post(where, {"mode": "changes"})) == where  # no question asked
    _run_feed(app, admin.tenant_id)
    assert all(r["amount"] is None for r in _rows(engine, admin.tenant_id).values())
    # Two headers on one column, or no id: refused with what to fix, nothing queued.
    where = _uploaded(admin, later, "again.csv")
    page = _page(admin, where + "?edit=1")
    choices = _proposed(page)
    twice = admin.post(where, {"mode": "changes", "edit": "1",
                               **{k: "name" for k in choices}})
    assert twice.status_code == 400 and "both mapped to name" in twice.get_data(as_text=True)
    no_id = admin.post(where, {"mode": "changes", "edit": "1",
                               **{k: "" for k in choices}})
    assert no_id.status_code == 400
    assert "choose the column that holds the record id" in no_id.get_data(as_text=True)
    assert uploads.get(engine, admin.tenant_id, int(where.rsplit("/", 1)[1])).status == "draft"


def test_a_full_snapshot_marks_deleted_the_records_missing_from_the_file(app: Flask) -> None:
    admin = _file_admin(app)
    path = EXPORTS / "european_export.csv"
    _imported(app, admin, path, mode="snapshot")
    smaller = b"\r\n".join(line for line in path.read_bytes().split(b"\r\n")
                           if b"EuAAAAA2" not in line)
    result = _imported(app, admin, smaller, "european_export.csv", mode="snapshot")
    assert (_figure(result, "deleted"), _figure(result, "unchanged")) == ("1", "3")
    assert "full snapshot" in result
    rows = _rows(_engine(app), admin.tenant_id)
    assert rows["0065g00000EuAAAAA2"]["is_deleted"] and not rows["0065g00000EuAAAAA1"][
        "is_deleted"]
    # Changes only: a file with one record deletes nothing.
    one = b"\r\n".join(path.read_bytes().split(b"\r\n")[:2]) + b"\r\n"
    result = _imported(app, admin, one, "european_export.csv", mode="changes")
    assert _figure(result, "deleted") == "0"
    assert not _rows(_engine(app), admin.tenant_id)["0065g00000EuAAAAA3"]["is_deleted"]


def test_only_the_tenants_admins_reach_its_uploads(app: Flask) -> None:
    admin = _file_admin(app)
    engine = _engine(app)
    where = _uploaded(admin, (EXPORTS / "hubspot_deals.csv").read_bytes(), "deals.csv")
    assert 'href="/uploads/"' in _page(admin, "/home")  # the admin's menu links it
    other = _file_admin(app)
    assert other.client.get(where).status_code == 404
    assert other.post(where, {"mode": "snapshot"}).status_code == 404
    assert other.post(where + "/discard").status_code == 404
    for role in ("manager", "seller"):
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE app_user SET role = :r WHERE email = :e"),
                         {"r": role, "e": admin.email})
        assert admin.client.get("/uploads/").status_code == 403
        assert admin.client.get(where).status_code == 403
        assert _upload(admin, b"Id,Name\n1,a\n", "x.csv").status_code == 403
        assert 'href="/uploads/"' not in _page(admin, "/home")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE app_user SET role = 'admin' WHERE email = :e"),
                     {"e": admin.email})
    assert uploads.get(engine, admin.tenant_id, int(where.rsplit("/", 1)[1])).status == "draft"
    crm_admin = _file_admin(app, crm_type="salesforce")
    assert "Your records come from your CRM" in _page(crm_admin, "/uploads/")
    assert _upload(crm_admin, b"Id,Name\n1,a\n", "x.csv").status_code == 200
    assert _stored(crm_admin) == (0, 0) and _stored(admin)[0] == 1
    assert Admin(app.test_client()).client.get("/uploads/").status_code == 302  # logged out


@pytest.mark.parametrize(("content", "filename", "says"), [
    (b"", "empty.csv", "the file is empty"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20, "logo.png", "binary file?"),
    (b"just one line of words\nand another\n", "notes.txt", "one column only"),
    (b"Id,Name\n", "header.csv", "no rows under its header"),
    (b"PK\x03\x04 not really a zip", "broken.zip", "one column only"),
])
def test_a_file_that_cannot_be_imported_is_refused_and_nothing_is_stored(
        app: Flask, content: bytes, filename: str, says: str) -> None:
    admin = _file_admin(app)
    response = _upload(admin, content, filename)
    page = unescape(response.get_data(as_text=True))
    assert response.status_code == 400 and "This file cannot be imported" in page, page[:3000]
    assert says in page
    assert _stored(admin) == (0, 0)


def test_an_oversized_upload_and_a_zip_bomb_get_clear_errors(concierge_db_url: str) -> None:
    app = make_app(concierge_db_url, FILE_UPLOAD_MAX_BYTES=1024 * 1024,
                   FILE_UPLOAD_MAX_UNZIPPED_BYTES=4 * 1024 * 1024)
    admin = _file_admin(app)
    big = b"Id,Name\n" + b"".join(b"%d,deal\n" % i for i in range(200_000))
    response = _upload(admin, big, "big.csv")
    page = unescape(response.get_data(as_text=True))
    assert response.status_code == 413 and "larger than 1 MB" in page
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("deals.csv", b"Id,Name\n" + b"0" * (8 * 1024 * 1024))
    assert len(bomb.getvalue()) < 100_000
    response = _upload(admin, bomb.getvalue(), "deals.zip")
    page = unescape(response.get_data(as_text=True))
    assert response.status_code == 400 and "unpacks to 8,388,616 bytes" in page
    assert _stored(admin) == (0, 0)
    # Under the limit, the same form works, and a draft can be discarded with its bytes.
    where = _uploaded(admin, (EXPORTS / "pipedrive_deals.csv").read_bytes(), "p.csv")
    assert _stored(admin)[0] == 1 and _stored(admin)[1] >= 1
    assert location(admin.post(where + "/discard")) == "/uploads/"
    assert _stored(admin) == (0, 0)


def test_file_upload_is_a_choice_in_select_crm_and_the_settings_after_setup(
        app: Flask) -> None:
    admin = Admin(app.test_client())
    admin.signup()
    admin.start()
    choices = _page(admin, "/onboarding/crm")
    assert 'value="file"' in choices and "File upload" in choices and "Push API" in choices
    assert location(admin.choose_crm("file")) == "/uploads/"
    assert tenants.require_tenant(_engine(app), admin.tenant_id).crm_type == FILE_CRM_TYPE
    # Until an upload is confirmed, the wizard stays at this step.
    assert location(admin.client.get("/onboarding/review")) == "/uploads/"
    where = _uploaded(admin, (EXPORTS / "hubspot_deals.csv").read_bytes(), "deals.csv")
    assert location(admin.client.get("/onboarding/review")) == "/uploads/"
    _confirm(admin, where)
    queued = _page(admin, where)
    assert "imported once you finish the setup" in queued and "refresh" not in queued
    assert 'href="/onboarding/review">Continue the setup' in queued
    assert "Review" in _page(admin, "/onboarding/review")
    assert location(admin.review()) == "/onboarding/terms"
    assert location(admin.terms()) == "/onboarding/complete"
    assert location(admin.finish()) == "/status"
    # After setup: the settings gear leads to the uploads, and the page has no setup link.
    assert location(admin.client.get("/integration")) == "/uploads/"
    assert "Continue the setup" not in _page(admin, where)


def test_the_status_page_reports_the_import_like_a_sync(app: Flask) -> None:
    admin = _file_admin(app)
    _imported(app, admin, EXPORTS / "pipedrive_deals.csv")
    status = _page(admin, "/status")
    assert "Opportunities" in status
    assert "Traceback" not in status
    assert "imports each export within a minute" in status and "syncs every" not in status


def test_only_objects_the_sync_reads_may_be_uploaded(app: Flask) -> None:
    admin = _file_admin(app)
    form = _page(admin, "/uploads/")
    assert 'value="opportunity"' in form and 'value="activity"' not in form  # not switched on
    refused = _upload(admin, b"Id,Subject\n1,Call\n", "calls.csv", object_name="activity")
    assert refused.status_code == 400 and "Choose what the file holds" in refused.get_data(
        as_text=True)
    assert _stored(admin) == (0, 0)


def test_an_upload_interrupted_while_stored_leaves_nothing(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The row and every chunk commit together: a failure half-way stores nothing."""
    admin = _file_admin(app)
    monkeypatch.setattr(uploads, "CHUNK_BYTES", 100)
    real_insert = uploads.sa.insert
    calls = {"n": 0}

    def failing_insert(table: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 4:  # the row, two chunks, then the database goes away
            raise RuntimeError("connection lost")
        return real_insert(table)

    monkeypatch.setattr(uploads.sa, "insert", failing_insert)
    failed = _upload(admin, (EXPORTS / "hubspot_deals.csv").read_bytes(), "deals.csv")
    monkeypatch.setattr(uploads.sa, "insert", real_insert)
    assert failed.status_code == 500 and "Something went wrong" in failed.get_data(as_text=True)
    assert calls["n"] == 4 and _stored(admin) == (0, 0)
