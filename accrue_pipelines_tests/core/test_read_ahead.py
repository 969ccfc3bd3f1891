"""The sync engine reads one page ahead of its writes (accrue.sync.ReadAhead, issue 15)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from accrue.sync import ReadAhead
from connectors.base import Checkpoint, Delete, QuotaExceeded

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _stream(pages: int, per_page: int, log: list[str]) -> Iterator[Any]:
    for page in range(pages):
        for number in range(per_page):
            log.append(f"read {page}.{number}")
            yield Delete(f"{page}.{number}", T0)
        log.append(f"read checkpoint {page}")
        yield Checkpoint({"cursor": page})


def test_the_consumer_sees_exactly_the_connector_sequence() -> None:
    expected = list(_stream(5, 7, []))
    for page_size in (0, 1, 3, 100):
        with ReadAhead(_stream(5, 7, []), page_size) as changes:
            assert list(changes) == expected


def test_the_reader_stays_at_most_one_page_ahead() -> None:
    """While page N is consumed, the reader has read page N+1 at most."""
    log: list[str] = []
    with ReadAhead(_stream(6, 4, log), 100) as changes:
        for change in changes:
            if isinstance(change, Checkpoint):
                page = change.state["cursor"]
                read_pages = {int(line.split()[-1].split(".")[0]) for line in list(log)
                              if line.startswith("read checkpoint")}
                assert max(read_pages) <= page + 1


def test_an_error_surfaces_after_the_changes_before_it_with_its_type() -> None:
    def failing() -> Iterator[Any]:
        yield Delete("a", T0)
        yield Checkpoint({"cursor": 1})
        yield Delete("b", T0)
        raise QuotaExceeded("daily budget spent", hint="resume tomorrow")

    seen: list[Any] = []
    with pytest.raises(QuotaExceeded) as raised, ReadAhead(failing(), 10) as changes:
        for change in changes:
            seen.append(change)
    assert [getattr(c, "source_id", None) for c in seen] == ["a", None, "b"]
    assert raised.value.hint == "resume tomorrow"


def test_leaving_early_closes_the_connector_in_its_own_thread() -> None:
    closed_in: list[str] = []

    def endless() -> Iterator[Any]:
        try:
            number = 0
            while True:
                number += 1
                yield Delete(str(number), T0)
                if number % 5 == 0:
                    yield Checkpoint({"cursor": number})
        finally:
            closed_in.append(threading.current_thread().name)

    with pytest.raises(RuntimeError), ReadAhead(endless(), 5) as changes:
        for change in changes:
            if isinstance(change, Checkpoint) and change.state["cursor"] == 10:
                raise RuntimeError("the write failed")
    assert closed_in == ["accrue-read-ahead"]
    assert not any(t.name == "accrue-read-ahead" for t in threading.enumerate())
