"""The push endpoint's OpenAPI description (issue 13, F8; onboarding_app/push/openapi.yaml,
linked from docs/openapi/push.yaml and served at /v1/push/openapi.json): a valid OpenAPI
3.1 document that says what the push endpoint does: its limits and enums are the code's
constants, a record the schema accepts is one the endpoint accepts (and the reverse), and
every answer the endpoint gives (202, 200, 400, 401, 413, 415, 429) validates against the
documented schema."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from accrue.push import inbox
from accrue.tenants import TENANT_ID_PATTERN
from accrue_pipelines_tests.concierge.test_concierge_app import (  # noqa: F401 - fixtures
    concierge_db_url_fixture,
    make_app,
)
from accrue_pipelines_tests.concierge.test_push_api import (
    Pusher,
    make_push_tenant,
    record,
    signed_headers,
)
from connectors.common_model import COMMON_OBJECTS, ID_LENGTH
from onboarding_app.push import describe, views

DOCS = Path(__file__).resolve().parents[2] / "docs" / "openapi" / "push.yaml"
DOCUMENT = describe.SOURCE
OPERATION = ("paths", "/v1/push/{tenant}/records", "post")


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


def operation(document: dict[str, Any]) -> dict[str, Any]:
    found: Any = document
    for key in OPERATION:
        found = found[key]
    return found


def validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator whose `#/components/...` refs resolve in `document`."""
    return Draft202012Validator({**schema, "components": document["components"]})


def answer_schema(document: dict[str, Any], status: int) -> dict[str, Any]:
    return operation(document)["responses"][str(status)]["content"]["application/json"]["schema"]


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises with the reason when it is not


def test_its_enums_and_limits_are_the_codes(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    record_schema = schemas["Record"]["properties"]
    assert record_schema["object"]["enum"] == list(COMMON_OBJECTS)
    assert record_schema["action"]["enum"] == list(inbox.ACTIONS)
    assert set(record_schema) == inbox.RECORD_KEYS
    assert record_schema["id"]["oneOf"][0]["maxLength"] == ID_LENGTH
    assert schemas["Batch"]["maxItems"] == inbox.MAX_RECORDS
    op = operation(document)
    assert op["x-max-body-bytes"] == views.DEFAULT_MAX_BODY_BYTES
    assert op["x-rate-limit"] == views.DEFAULT_RATE_LIMIT
    headers = {p["name"]: p for p in op["parameters"] if p["in"] == "header"}
    assert set(headers) == {views.CLIENT_ID_HEADER, *views._SIGNATURE_HEADERS}
    assert headers["webhook-id"]["schema"]["maxLength"] == inbox.WEBHOOK_ID_MAX
    [tenant] = [p for p in op["parameters"] if p["in"] == "path"]
    assert tenant["schema"]["pattern"] == TENANT_ID_PATTERN.pattern
    assert set(op["responses"]) == {"200", "202", "400", "401", "413", "415", "429"}


SAMPLES: list[Any] = [
    record(), record("opportunity", "D1", "update", "2026-11-30T10:15:00Z", amount=1.5),
    {"object": "lead", "id": 7, "action": "delete"},
    {"object": "lead", "id": "L1", "action": "delete", "data": None},
    {"object": "account", "id": "A1", "action": "create"},  # no data
    {"object": "account", "id": "A1", "action": "create", "data": None},
    {"object": "account", "id": "A1", "action": "create", "data": []},
    {"object": "deal", "id": "A1", "action": "create", "data": {}},
    {"object": "account", "id": "", "action": "create", "data": {}},
    {"object": "account", "id": True, "action": "create", "data": {}},
    {"object": "account", "id": "x" * (ID_LENGTH + 1), "action": "create", "data": {}},
    {"object": "account", "id": "A1", "action": "upsert", "data": {}},
    {"object": "account", "id": "A1", "action": "create", "data": {}, "extra": 1},
    {"id": "A1", "action": "create", "data": {}},
    "not a record",
]


@pytest.mark.parametrize("sample", SAMPLES, ids=[str(i) for i in range(len(SAMPLES))])
def test_the_record_schema_accepts_what_the_endpoint_accepts(
        document: dict[str, Any], sample: Any) -> None:
    check = validator(document, {"$ref": "#/components/schemas/Record"})
    assert check.is_valid(sample) == (inbox.record_problems(sample) == []), (
        inbox.record_problems(sample), [e.message for e in check.iter_errors(sample)])


def test_the_request_example_is_a_valid_batch(document: dict[str, Any]) -> None:
    content = operation(document)["requestBody"]["content"]["application/json"]
    example = content["examples"]["batch"]["value"]
    validator(document, content["schema"]).validate(example)
    assert len(inbox.parse_batch(json.dumps(example).encode())) == 2


@pytest.fixture
def app(concierge_db_url: str) -> Flask:
    return make_app(concierge_db_url, PUSH_MAX_BODY_BYTES=20_000, PUSH_RATE_LIMIT="6 per minute")


def test_every_answer_of_the_endpoint_matches_its_documented_schema(
        app: Flask, document: dict[str, Any], tenant_id: str) -> None:
    engine = app.extensions["accrue_warehouse"]
    pusher = Pusher(app.test_client(), tenant_id, make_push_tenant(engine, tenant_id))
    answers = {
        202: pusher.push([record(extra_field="kept in raw")], webhook_id="msg_doc"),
        200: pusher.push([record(extra_field="kept in raw")], webhook_id="msg_doc"),
        400: pusher.push([record(), {"object": "deal", "id": "", "action": "x"}]),
        401: pusher.push([record()], secret="whsec_" + "B" * 43 + "="),
        413: pusher.push(None, body=json.dumps([record()] * 400).encode()),
    }
    body = json.dumps([record()]).encode()
    headers = signed_headers(pusher.issued.secret, body, client_id=pusher.issued.client_id)
    headers["Content-Type"] = "text/plain"
    answers[415] = pusher.client.post(f"/v1/push/{tenant_id}/records", data=body,
                                      headers=headers)
    bad_json = pusher.push(None, body=b"{not json")
    while (limited := pusher.push([record()])).status_code != 429:
        assert limited.status_code == 202
    answers[429] = limited
    for status, response in [*answers.items(), (400, bad_json)]:
        assert response.status_code == status, (status, response.get_json())
        assert response.mimetype == "application/json"
        validator(document, answer_schema(document, status)).validate(response.get_json())
    assert "unmapped_fields" in answers[202].get_json()
    assert answers[400].get_json()["errors"][0]["index"] == 1
    retry = answers[429].headers["Retry-After"]
    header_schema = operation(document)["responses"]["429"]["headers"]["Retry-After"]["schema"]
    assert re.fullmatch(r"[0-9]+", retry)
    Draft202012Validator(header_schema).validate(int(retry))


def test_it_is_served_as_json_from_its_one_source(concierge_db_url: str,
                                                   document: dict[str, Any]) -> None:
    assert DOCS.resolve() == DOCUMENT.resolve()  # the docs' copy is a link, not a copy
    answer = make_app(concierge_db_url).test_client().get("/v1/push/openapi.json")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.get_json() == json.loads(json.dumps(document))
