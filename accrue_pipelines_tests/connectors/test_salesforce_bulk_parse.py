"""Large Bulk pages parsed in a helper process (`bulk_parse.py`) give what parsing them
in-process gives, in order, and losing the helper loses nothing."""

from __future__ import annotations

import csv
import io
import subprocess
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import ConnectorError, Upsert
from connectors.common_model import COMMON_OBJECTS
from connectors.registry import create_connector
from connectors.salesforce import bulk_parse
from connectors.salesforce.bulk_parse import PageParser, _Helper, parse_slice, slices
from connectors.salesforce.sandbox import RunningSandbox, running_sandbox

TYPES = {"Id": "id", "Name": "string", "Amount": "currency", "SystemModstamp": "datetime",
         "CloseDate": "date", "IsDeleted": "boolean", "IsClosed": "boolean"}
ARGS = ("opportunity", "Opportunity", TYPES, "59.0", ",")


def _page(rows: int, *, bad_row: int | None = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(TYPES))
    for n in range(rows):
        row = [f"006{n:015d}", f'deal "{n}",\nsecond line' if n % 7 == 0 else f"deal {n}",
               f"{n * 10.5}", f"2026-01-01T00:{n % 60:02d}:00.000Z", "2026-03-01",
               "false", "true" if n % 2 else "false"]
        writer.writerow(row[:-1] if n == bad_row else row)
    return out.getvalue()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(cells=st.lists(st.lists(st.text('ab,"\n\r x', max_size=6), min_size=2, max_size=2),
                      max_size=30),
       size=st.integers(1, 40), crlf=st.booleans())
def test_slices_cut_only_at_row_ends(cells: list[list[str]], size: int, crlf: bool) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n" if crlf else "\n").writerows([["A", "B"], *cells])
    text = out.getvalue()
    pieces = list(slices(text, size))
    rows = []
    for piece in pieces:
        parsed = list(csv.reader(io.StringIO(piece, newline="")))
        assert parsed[0] == ["A", "B"]
        rows.extend(parsed[1:])
    assert rows == list(csv.reader(io.StringIO(text, newline="")))[1:]


@pytest.fixture
def parser() -> Iterator[PageParser]:
    parsing = PageParser(1, slice_chars=500)
    try:
        yield parsing
    finally:
        parsing.close()


def test_the_helper_gives_what_parsing_in_process_gives(parser: PageParser) -> None:
    text = _page(200)
    expected = parse_slice(text, *ARGS)
    got = list(parser.changes(text, 200, *ARGS[:4]))
    assert got == expected and len(got) == 200
    assert parser._helper is not None  # the helper did it
    assert all(c.modified_at.tzinfo is UTC for c in got if isinstance(c, Upsert))
    assert list(parser.changes(text, 200, *ARGS[:4])) == expected  # and again, in order


def test_small_pages_are_parsed_in_process() -> None:
    parsing = PageParser(1_000)
    assert len(list(parsing.changes(_page(5), 5, *ARGS[:4]))) == 5
    assert parsing._helper is None


def test_on_one_cpu_pages_are_parsed_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk_parse, "_cores", lambda: 1)
    parsing = PageParser(1)
    assert list(parsing.changes(_page(20), 20, *ARGS[:4])) == parse_slice(_page(20), *ARGS)
    assert parsing._helper is None


def test_a_helper_that_dies_mid_page_loses_nothing(parser: PageParser,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    text = _page(300)
    changes = parser.changes(text, 300, *ARGS[:4])
    got = [next(changes) for _ in range(3)]
    assert parser._helper is not None
    parser._helper.process.kill()
    got.extend(changes)
    assert got == parse_slice(text, *ARGS)
    assert "gave no answer" in caplog.text
    assert list(parser.changes(text, 300, *ARGS[:4])) == got  # in-process from now on
    assert parser._helper is None


def test_a_page_the_helper_cannot_parse_raises_as_in_process(parser: PageParser) -> None:
    text = _page(100, bad_row=60)
    with pytest.raises(ConnectorError, match="a row of 6 fields under a header of 7"):
        list(parser.changes(text, 100, *ARGS[:4]))


def test_leaving_mid_page_hands_no_stale_answer_to_the_next_page(parser: PageParser) -> None:
    first = parser.changes(_page(300), 300, *ARGS[:4])
    next(first)
    first.close()  # the reader stopped (an error downstream): answers were on their way
    other = _page(50).replace("deal", "other deal")
    assert list(parser.changes(other, 50, *ARGS[:4])) == parse_slice(other, *ARGS)


def test_the_helper_exits_when_its_reader_goes_away() -> None:
    helper = _Helper()
    assert helper.process.stdin is not None
    helper.process.stdin.close()
    assert helper.process.wait(timeout=30) == 0


@pytest.fixture
def org(tmp_path: Path) -> Iterator[RunningSandbox]:
    sandbox = running_sandbox(str(tmp_path / "bulk-parse-org.db"), seed=5, n_opportunities=40)
    try:
        yield sandbox
    finally:
        sandbox.stop()


def _read_all(org: RunningSandbox, **config: Any) -> dict[str, list[Any]]:
    secrets = {"username": org.username, "password": org.password,
               "security_token": org.security_token}
    with create_connector("salesforce", secrets, {"sandbox_url": org.url, "bulk_threshold": 0,
                                                  **config}) as connector:
        connector.page_parser.slice_chars = 400
        read = {name: list(connector.read(name, None)) for name in COMMON_OBJECTS}
        assert (connector.page_parser._helper is not None) == bool(
            config.get("bulk_parse_min_records"))
    return read


def test_a_sync_read_through_the_helper_is_the_in_process_read(org: RunningSandbox) -> None:
    by_helper = _read_all(org, bulk_parse_min_records=1)
    in_process = _read_all(org, bulk_parse_min_records=None)
    for name in COMMON_OBJECTS:
        records = [c for c in by_helper[name] if not hasattr(c, "state")]
        assert records == [c for c in in_process[name] if not hasattr(c, "state")], name
    assert sum(len(v) for v in by_helper.values()) > 100


def test_a_killed_reader_leaves_no_helper_behind(tmp_path: Path) -> None:
    """The reader is SIGKILLed while the helper works: its stdin closes, so it exits."""
    script = ("import sys; from connectors.salesforce.bulk_parse import _Helper; "
              "h = _Helper(); print(h.process.pid, flush=True); sys.stdin.read()")
    reader = subprocess.Popen([__import__("sys").executable, "-c", script],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert reader.stdout is not None
    helper_pid = int(reader.stdout.readline())
    reader.kill()
    reader.wait()
    for _ in range(300):
        if not Path(f"/proc/{helper_pid}").exists() or "Z" in Path(
                f"/proc/{helper_pid}/stat").read_text().split()[2]:
            break
        __import__("time").sleep(0.1)
    else:
        pytest.fail(f"helper {helper_pid} outlived its reader")
