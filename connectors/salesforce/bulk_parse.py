"""Large Bulk result pages turned into changes in a helper process.

Why: parsing a page's CSV and mapping its records is most of a Bulk read's CPU (~35 µs a
record), and it runs beside the sync engine's writes in the same process, so both share
one interpreter lock: on an initial load each waits for the other (issue 15). A page is
pure data, so it can be parsed elsewhere: a helper process parses and maps it in slices
of rows and hands back the very `Upsert`/`Quarantine` messages `map_record` makes
(pickled: strings, numbers, flags and UTC instants come back equal, the zone the same
`UTC` object). Only unpickling them is left to the reading process, several times cheaper.

The helper is `python -m connectors.salesforce.bulk_parse`, fed slices of CSV text on
its stdin and answering on its stdout (length-prefixed pickles, in order). It gets no
credentials, opens no connection, and exits when its stdin closes, so it cannot outlive
the reader. Not needed for correctness: a slice it cannot answer (it died, or parsing
raised) is parsed again in-process, which then raises the very error, or yields the
records; after a failure this connector stops using it. What is not changed: the order
of the records, the checks on a page, what a record maps to. Small pages
(`bulk_parse_min_records`), and every page where the process may use only one CPU, are
parsed in-process: there a helper costs more than it frees.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from typing import IO, Any

from connectors.base import Quarantine, Upsert
from connectors.salesforce.bulk_csv import csv_records
from connectors.salesforce.mapping import map_record

log = logging.getLogger(__name__)

SLICE_CHARS = 2_000_000  # a slice's CSV text (~6,000 line-item rows): what one task parses
IN_FLIGHT = 2  # slices sent ahead of the one being read: memory holds at most this many
_LENGTH = struct.Struct("!Q")
Parsed = list[Upsert | Quarantine]


def parse_slice(text: str, object_name: str, sobject: str, types: Mapping[str, str],
                version: str, delimiter: str) -> Parsed:
    """One slice of a page (its header row first) as changes."""
    return [map_record(object_name, record)
            for record in csv_records(text, sobject, types, version, delimiter=delimiter)]


def slices(text: str, size: int) -> Iterator[str]:
    """The page's CSV cut at row ends into pieces of about `size` characters, each with the
    header row first. A newline ends a row only outside quotes: where the quotes before it
    are even in number (a quote inside a value is doubled, so it never changes that)."""
    header_end = text.find("\n") + 1
    if header_end <= 0 or len(text) - header_end <= size:
        yield text
        return
    header = text[:header_end]
    start = header_end
    while start < len(text):
        cut = text.find("\n", min(start + size, len(text)) - 1)
        while cut != -1 and text.count('"', start, cut) % 2:
            cut = text.find("\n", cut + 1)
        end = len(text) if cut == -1 else cut + 1
        yield header + text[start:end]
        start = end


def _send(stream: IO[bytes], value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    """The next message, or None at the end of the stream (the other side is gone)."""
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        return None
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


def _cores() -> int:
    """CPUs this process may run on: on one, a helper would only add its hand-over."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class _Helper:
    """One helper process and the slices sent to it, answered in order."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ACCRUE_SECRET")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "connectors.salesforce.bulk_parse"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

    def send(self, piece: str, args: tuple[Any, ...]) -> bool:
        try:
            _send(self.process.stdin, (piece, *args))  # type: ignore[arg-type]
        except (BrokenPipeError, OSError, ValueError):
            return False
        return True

    def receive(self) -> Parsed | None:
        """The oldest slice's changes; None when the helper could not give them."""
        try:
            answer = _receive(self.process.stdout)  # type: ignore[arg-type]
        except (OSError, ValueError, pickle.UnpicklingError, EOFError):
            return None
        if not isinstance(answer, tuple) or answer[0] != "ok":
            return None
        parsed: Parsed = answer[1]
        return parsed

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # the helper exits at the end of its input
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


class PageParser:
    """Parses result pages: large ones in one helper process (started when first needed)."""

    def __init__(self, min_records: int | None, slice_chars: int = SLICE_CHARS) -> None:
        self.min_records = min_records
        self.slice_chars = slice_chars
        self._helper: _Helper | None = None
        self._failed = False

    def changes(self, text: str, records: int, object_name: str, sobject: str,
                types: Mapping[str, str], version: str, delimiter: str = ","
                ) -> Iterator[Upsert | Quarantine]:
        """The page's records as changes, in order."""
        args = (object_name, sobject, dict(types), version, delimiter)
        helper = self._start(records)
        if helper is None:
            yield from parse_slice(text, *args)
            return
        pending = slices(text, self.slice_chars)
        sent: deque[str] = deque()
        try:
            while True:
                while len(sent) < IN_FLIGHT and (piece := next(pending, None)) is not None:
                    sent.append(piece)
                    if not helper.send(piece, args):
                        break
                if not sent:
                    return
                piece = sent.popleft()
                parsed = helper.receive()
                if parsed is None:  # it died, or parsing raised there: the rest in-process
                    self._give_up("the helper process gave no answer")
                    rest, sent = [piece, *sent, *pending], deque()
                    for piece in rest:
                        yield from parse_slice(piece, *args)
                    return
                yield from parsed
        finally:
            if sent:  # left mid-page: answers still on their way would reach the next page
                self.close()

    def _start(self, records: int) -> _Helper | None:
        if (self.min_records is None or records < self.min_records or self._failed
                or _cores() < 2):
            return None
        if self._helper is None:
            try:
                self._helper = _Helper()
            except OSError as exc:
                self._give_up(f"no helper process ({exc})")
                return None
        return self._helper

    def _give_up(self, why: str) -> None:
        log.warning("Salesforce Bulk pages: %s; parsing them in-process", why)
        self._failed = True
        self.close()

    def close(self) -> None:
        if self._helper is not None:
            helper, self._helper = self._helper, None
            helper.close()


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The helper's loop: each slice read is answered with its changes, in order. Reading
    runs in a thread of its own so the parent's next slice never waits behind an answer
    (a pipe holds only 64 KB: both sides writing at once would block for good)."""
    tasks: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()

    def read() -> None:
        while (task := _receive(requests)) is not None:
            tasks.put(task)
        tasks.put(None)

    threading.Thread(target=read, daemon=True).start()
    while (task := tasks.get()) is not None:
        try:
            answer: tuple[str, Any] = ("ok", parse_slice(*task))
        except Exception as exc:  # the parent parses the slice again and raises it there
            answer = ("error", f"{type(exc).__name__}: {exc}")
        try:
            _send(answers, answer)
        except (BrokenPipeError, OSError):
            return


if __name__ == "__main__":
    serve(sys.stdin.buffer, sys.stdout.buffer)
