"""The fetch ceiling's instrumentation must not change what it measures: a timed
response is freed as soon as the connector drops it (no reference cycle keeping every
page's body alive until a full garbage collection), and its JSON still parses."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import requests

from benchmarks.sync_ceilings import HttpClock


class _Session:
    def request(self, *_args: Any, **_kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response._content = b'{"records": [1, 2, 3]}'  # noqa: SLF001 - a body without a server
        return response


def test_a_timed_response_is_freed_without_a_garbage_collection() -> None:
    clock = HttpClock()
    session = clock.wrap(_Session())
    gc.disable()
    try:
        response = session.request("GET", "http://sandbox/page")
        assert response.json() == {"records": [1, 2, 3]}
        freed = weakref.ref(response)
        del response
        assert freed() is None
    finally:
        gc.enable()
    assert clock.requests == 1 and clock.response_bytes == 22 and clock.json_seconds >= 0
