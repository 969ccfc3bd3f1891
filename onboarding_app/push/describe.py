"""`GET /v1/push/openapi.json`: the push endpoint's OpenAPI 3.1 description, for anyone
writing a sender (it holds no tenant data).

The one source is `openapi.yaml` beside this module (docs/openapi/push.yaml links to it);
accrue_pipelines_tests/concierge/test_push_openapi.py holds it to the implementation.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from flask import jsonify
from flask.typing import ResponseReturnValue

from onboarding_app.push import bp

SOURCE = Path(__file__).with_name("openapi.yaml")


@functools.cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    return loaded


@bp.get("/openapi.json")
def openapi() -> ResponseReturnValue:
    return jsonify(document())
