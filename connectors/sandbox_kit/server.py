"""Serve any sandbox's WSGI app: in a background thread for tests, or blocking for a CLI.

Werkzeug's threaded server keeps keep-alive connections open after `shutdown()`, so a
stopped sandbox would still answer a client holding a pooled connection; the handler here
tracks open sockets and `BackgroundServer.stop()` closes them too.

`ServedSandbox.start` is how a sandbox with a store of the kit's (`SqliteState`) and an app
with the kit's fault switches gets served, so every such sandbox checks its starting
faults, follows its clock in `Date` and closes its state file the same way.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, Generic, Protocol, Self, TypeVar

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request

from .faults import FaultPlanner
from .state import SqliteState

WsgiApp = Callable[..., Any]


class _Handler(WSGIRequestHandler):
    """Tracks open connections so `stop()` can close keep-alive sockets too."""

    quiet = False

    def setup(self) -> None:
        super().setup()
        server = self.server
        with server.sandbox_lock:  # type: ignore[attr-defined]
            server.sandbox_connections.add(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        server = self.server
        with server.sandbox_lock:  # type: ignore[attr-defined]
            server.sandbox_connections.discard(self.connection)  # type: ignore[attr-defined]
        super().finish()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if not self.quiet:
            super().log_request(code, size)


class _QuietHandler(_Handler):
    quiet = True


def make_sandbox_server(app: WsgiApp, host: str = "127.0.0.1", port: int = 0, *,
                        quiet: bool = True) -> BaseWSGIServer:
    """A threaded server bound now (port 0 picks a free one), not yet serving."""
    handler = _QuietHandler if quiet else _Handler
    server = make_server(host, port, app, threaded=True, request_handler=handler)
    server.sandbox_connections = set()  # type: ignore[attr-defined]
    server.sandbox_lock = threading.Lock()  # type: ignore[attr-defined]
    return server


class BackgroundServer:
    """Any WSGI app served on `url` from a daemon thread until `stop()`; a context manager."""

    def __init__(self, app: WsgiApp, host: str = "127.0.0.1", port: int = 0, *,
                 quiet: bool = True, name: str = "sandbox",
                 server: BaseWSGIServer | None = None) -> None:
        self.app = app
        self._server = server or make_sandbox_server(app, host, port, quiet=quiet)
        bound = self._server.server_address[0]
        assert isinstance(bound, str)  # a bound AF_INET/AF_INET6 socket names its host as text
        self.host = bound
        self.port = int(self._server.server_port)
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1},
                                        name=f"{name}-{self.port}", daemon=True)
        self._thread.start()
        self._stopped = False

    def stop(self) -> None:
        """Stop serving and drop open connections; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        with self._server.sandbox_lock:  # type: ignore[attr-defined]
            open_sockets = list(self._server.sandbox_connections)  # type: ignore[attr-defined]
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def json_object_body(request: Request, refuse: Callable[[str], Exception], *,
                     invalid: str, not_object: str) -> dict[str, Any]:
    """The request's body as a JSON object (empty: {}); anything else is refused with the
    CRM's own 400 (`refuse`) and its own wording, as clients match on it."""
    try:
        body = json.loads(request.get_data(as_text=True) or "{}")
    except ValueError:
        raise refuse(invalid) from None
    if not isinstance(body, dict):
        raise refuse(not_object)
    return body


def follow_clock(server: BaseWSGIServer, clock: Callable[[], datetime]) -> None:
    """Make the server's `Date` header tell the sandbox's time: an adapter reads its CRM's
    clock from it, so tests that move the sandbox's clock move what the adapter sees."""
    base: type = server.RequestHandlerClass  # type: ignore[assignment]

    def date_time_string(self: Any, timestamp: float | None = None) -> str:
        if timestamp is not None:
            return str(getattr(base, "date_time_string")(self, timestamp))  # noqa: B009
        return format_datetime(clock().astimezone(UTC), usegmt=True)

    server.RequestHandlerClass = type("ClockedHandler", (base,),
                                      {"date_time_string": date_time_string})


def serve_blocking(server: BaseWSGIServer) -> None:
    """Serve until Ctrl-C or SIGTERM (from the main thread), then close the socket."""

    def stop(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)  # out of serve_forever, through the `finally`

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class FaultedApp(Protocol):
    """A sandbox's WSGI app with the kit's fault switches (`FaultSwitches`)."""

    planner: FaultPlanner

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any: ...

    def set_faults(self, switches: Mapping[str, Any]) -> dict[str, Any]: ...


StoreT = TypeVar("StoreT", bound=SqliteState)
AppT = TypeVar("AppT", bound=FaultedApp)


@dataclass
class ServedSandbox(Generic[StoreT, AppT]):
    """The store, the application and the kit's background server serving it."""

    store: StoreT
    app: AppT
    server: BackgroundServer

    @classmethod
    def start(cls, store: StoreT, app: AppT, *, faults: Mapping[str, Any] | None,
              host: str, port: int, name: str) -> Self:
        """Serve `app` from a thread, its starting `faults` set first (a bad one raises
        `FaultConfigError` with the store closed, nothing served) and the `Date` header on
        the store's clock (adapters read their CRM's time from it)."""
        if faults:
            try:
                app.set_faults(faults)  # the kit's switches (and fail_next / throttle_next)
            except ValueError:
                store.close()
                raise
        server = make_sandbox_server(app, host, port)
        follow_clock(server, store.clock)
        return cls(store, app, BackgroundServer(app, server=server, name=name))

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()
        self.store.close()
