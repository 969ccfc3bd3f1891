"""The kit's server runner and transport, which every CRM sandbox and its tests rely on."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from connectors.sandbox_kit.server import BackgroundServer
from connectors.sandbox_kit.transport import SandboxAdapter, sandbox_session


def _echo(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = json.dumps({"path": environ["PATH_INFO"], "query": environ["QUERY_STRING"],
                       "host": environ.get("HTTP_HOST")}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def test_any_https_url_reaches_the_sandbox_with_its_path_and_query() -> None:
    with BackgroundServer(_echo) as server:
        session = sandbox_session(server.url)
        got = session.get("https://api.close.example/api/v1/lead/?_limit=5", timeout=5).json()
        assert got["path"] == "/api/v1/lead/" and got["query"] == "_limit=5"
        plain = requests.Session()
        plain.mount("https://", SandboxAdapter(server.url))
        assert plain.get("https://x.example/a?b=1", timeout=5).json()["path"] == "/a"


def test_only_the_named_hosts_are_rerouted() -> None:
    with BackgroundServer(_echo) as server:
        session = sandbox_session(server.url, ["login.example"])
        assert session.get("https://login.example/x", timeout=5).json()["path"] == "/x"
        host = server.url.removeprefix("http://")
        assert session.get(f"https://{host}/y", timeout=5).json()["path"] == "/y"
        assert "https://other.example/" not in session.adapters


def test_a_stopped_server_answers_no_more_even_on_a_kept_alive_connection() -> None:
    server = BackgroundServer(_echo)
    session = requests.Session()
    assert session.get(f"{server.url}/ping", timeout=5).ok
    server.stop()
    server.stop()  # twice is fine
    with pytest.raises(requests.ConnectionError):
        session.get(f"{server.url}/ping", timeout=5)


def test_a_bad_base_url_is_refused() -> None:
    with pytest.raises(ValueError):
        SandboxAdapter("127.0.0.1:80")
