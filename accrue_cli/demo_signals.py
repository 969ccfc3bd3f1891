"""Stopping the demo: Ctrl-C, SIGTERM and SIGHUP all take the same path, once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class DemoStopped(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP: a KeyboardInterrupt, so every stop takes the same path."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    def describe(self) -> str:
        return "Ctrl-C" if self.signum == signal.SIGINT else signal.Signals(self.signum).name


class StopSignals:
    """Turns stop signals into DemoStopped, once: later ones must not cut the shutdown short.

    (`make` forwards its own SIGTERM to the demo right after the process group got one.)
    """

    def __init__(self) -> None:
        self.stopping = False
        self._holding = False
        self._pending: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, _frame: FrameType | None) -> None:
        if self.stopping:
            return
        if self._holding:
            self._pending = signum
            return
        self.stopping = True
        raise DemoStopped(signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for sig in STOP_SIGNALS:
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue  # started under nohup: the user asked to survive a closed terminal
            self._previous[sig] = signal.signal(sig, self._handler)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Delay a stop signal until the block ends: a child started is a child recorded."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending is not None and not self.stopping:
            self.stopping = True
            raise DemoStopped(self._pending)


