"""Point a CRM's unmodified client at a local sandbox.

Clients hard-code `https://` and their vendor's hosts. A `requests.Session` with
`SandboxAdapter` mounted sends those requests to the sandbox's plain-HTTP address instead,
keeping path and query, so the only change in client code is the session it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter


class SandboxAdapter(HTTPAdapter):
    """Sends every request it handles to the sandbox, keeping path and query."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        target = urlsplit(base_url)
        if target.scheme not in ("http", "https") or not target.netloc:
            raise ValueError(f"sandbox base URL must look like http://host:port, got {base_url!r}")
        self.target = target
        super().__init__(**kwargs)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        original = urlsplit(request.url or "")
        request.url = urlunsplit(
            (self.target.scheme, self.target.netloc, original.path, original.query,
             original.fragment)
        )
        # a local sandbox is never behind the user's proxy
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert,
                            proxies={})


def sandbox_session(base_url: str, hosts: Iterable[str] | None = None) -> requests.Session:
    """A Session sending `https://<host>/...` for each of `hosts` (every https URL when
    None) and the sandbox's own `https://<host:port>` to `base_url`; the rest goes out
    untouched. Proxies from the environment are ignored."""
    session = requests.Session()
    session.trust_env = False
    adapter = SandboxAdapter(base_url)
    if hosts is None:
        session.mount("https://", adapter)
        return session
    for host in (*hosts, urlsplit(base_url).netloc):
        session.mount(f"https://{host}/", adapter)
    return session
