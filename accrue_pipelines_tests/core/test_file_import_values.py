"""File import (F9), without a database: reading exports, their values, mapping proposals."""

from __future__ import annotations

import codecs
import zipfile
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from accrue.file_import.mapping import FileMapping, propose_columns
from accrue.file_import.proposal import choose_file
from accrue.file_import.reading import (
    CsvFile,
    csv_files,
    detect_dialect,
    detect_encoding,
    read_rows,
)
from accrue.file_import.values import (
    ValueFormat,
    ValueProblem,
    convert,
    infer_format,
    parse_date,
    parse_datetime,
    parse_number,
)
from connectors.common_model import Column

EXPORTS = Path(__file__).parents[1] / "file_import_exports"
DOT, COMMA, UNKNOWN = ValueFormat(decimal="."), ValueFormat(decimal=","), ValueFormat()


@pytest.mark.parametrize(("text", "fmt", "expected"), [
    ("USD 1,234.56", UNKNOWN, "1234.56"),
    ("$1,234.56", DOT, "1234.56"),
    ("1.234,56 €", COMMA, "1234.56"),
    ("12.500,75 €", UNKNOWN, "12500.75"),
    ("1.234", COMMA, "1234"),
    ("1.234", DOT, "1.234"),
    ("1,500", DOT, "1500"),
    ("3 400.50", DOT, "3400.50"),
    ("-$5", UNKNOWN, "-5"),
    ("75%", UNKNOWN, "75"),
])
def test_numbers_parse_exactly_under_the_files_convention(text, fmt, expected):
    assert parse_number(text, fmt) == Decimal(expected)


@pytest.mark.parametrize(("text", "fmt", "why"), [
    ("1.234", UNKNOWN, "ambiguous"),
    ("1,234", UNKNOWN, "ambiguous"),
    ("12,5", DOT, "not a number"),
    ("1.23.4", DOT, "not a number"),
    ("1,23,456", DOT, "not a number"),  # Indian grouping is not guessed
    ("TBD", UNKNOWN, "not a number"),
    ("USD 5 EUR", UNKNOWN, "not a number"),
])
def test_numbers_that_do_not_say_one_value_are_refused(text, fmt, why):
    with pytest.raises(ValueProblem, match=why):
        parse_number(text, fmt)


def test_dates_read_in_the_files_order_or_refused_as_ambiguous():
    assert parse_date("1/15/2024", UNKNOWN) == date(2024, 1, 15)
    assert parse_date("15.01.2024", UNKNOWN) == date(2024, 1, 15)
    assert parse_date("2024-01-15", ValueFormat(date_order="DMY")) == date(2024, 1, 15)
    assert parse_date("03.04.2024", ValueFormat(date_order="DMY")) == date(2024, 4, 3)
    assert parse_date("03/04/2024", ValueFormat(date_order="MDY")) == date(2024, 3, 4)
    with pytest.raises(ValueProblem, match="ambiguous"):
        parse_date("03/04/2024", UNKNOWN)
    with pytest.raises(ValueProblem, match="not a real date"):
        parse_date("31/12/2024", ValueFormat(date_order="MDY"))
    with pytest.raises(ValueProblem, match="four-digit year"):
        parse_date("1/15/24", UNKNOWN)
    with pytest.raises(ValueProblem):
        parse_date("2023-02-29", UNKNOWN)


def test_datetimes_carry_the_files_time_zone_or_their_own_offset():
    ny = ValueFormat(date_order="MDY", timezone="America/New_York")
    assert parse_datetime("1/15/2024 3:05 PM", ny).astimezone(UTC) == datetime(
        2024, 1, 15, 20, 5, tzinfo=UTC)
    assert parse_datetime("2024-01-15 10:22", UNKNOWN) == datetime(2024, 1, 15, 10, 22,
                                                                   tzinfo=UTC)
    assert parse_datetime("2024-01-15T10:22:33+02:00", UNKNOWN).astimezone(UTC) == datetime(
        2024, 1, 15, 8, 22, 33, tzinfo=UTC)
    with pytest.raises(ValueProblem):
        parse_datetime("2024-01-15 25:00", UNKNOWN)


def test_columns_convert_to_their_type_and_text_is_kept_as_written():
    assert convert("  Acme  ", Column("name", "str", 255), UNKNOWN) == "  Acme  "
    assert convert("yes", Column("is_won", "bool"), UNKNOWN) is True
    assert convert("1.000", Column("employee_count", "int"), COMMA) == 1000
    assert convert("2024-02-29 00:00", Column("close_date", "date"), UNKNOWN) == date(2024, 2, 29)
    with pytest.raises(ValueProblem, match="whole number"):
        convert("12.5", Column("employee_count", "int"), DOT)
    with pytest.raises(ValueProblem, match="holds 3"):
        convert("EURO", Column("currency", "str", 3), UNKNOWN)
    with pytest.raises(ValueProblem, match="yes/no"):
        convert("maybe", Column("is_won", "bool"), UNKNOWN)


def test_conventions_are_inferred_from_values_that_read_one_way_only():
    fmt, notes = infer_format(["1.234", "12.500,75 €", "980,5"], ["15.01.2024", "03.01.2024"])
    assert (fmt.decimal, fmt.date_order, notes) == (",", "DMY", [])
    fmt, _ = infer_format(["1,234.56", "5"], ["1/15/2024", "2/3/2024"])
    assert (fmt.decimal, fmt.date_order) == (".", "MDY")
    fmt, notes = infer_format(["1.234", "5"], ["2024-01-01"])  # nothing says
    assert (fmt.decimal, fmt.date_order, notes) == (None, None, [])
    fmt, notes = infer_format(["12,5", "1.5"], [])  # half and half: the admin decides
    assert fmt.decimal is None and "set it" in notes[0]


def test_encodings_dialects_bom_and_quoted_newlines_are_detected():
    sf = CsvFile(EXPORTS / "salesforce_report.csv")
    assert detect_encoding(sf) == "utf-8-sig"
    assert detect_dialect(sf, "utf-8-sig").delimiter == ","
    with read_rows(sf, "utf-8-sig", detect_dialect(sf, "utf-8-sig")) as (headers, rows):
        assert headers[0] == "Opportunity ID"  # no BOM left in the first header
        found = list(rows)
    # The footer ("Generated By: ...", the org, the confidentiality line) is not data.
    assert [r.line for r in found] == [2, 4, 5, 6, 7, 8]
    assert found[0].values[-1] == 'Signed after a second demo.\r\nPO attached, "net 30" terms.'
    eu = CsvFile(EXPORTS / "european_export.csv")
    assert detect_encoding(eu) == "cp1252"
    assert detect_dialect(eu, "cp1252").delimiter == ";"
    with read_rows(eu, "cp1252", detect_dialect(eu, "cp1252")) as (_, rows):
        names = [r.values[1] for r in rows]
    assert names[0] == "Müller GmbH – Rahmenvertrag" and names[2] == "Ærøskøbing Værft"


def test_utf16_and_tab_separated_exports(tmp_path):
    path = tmp_path / "excel.txt"
    path.write_bytes(codecs.BOM_UTF16_LE + "Id\tName\n1\tZoë\n".encode("utf-16-le"))
    source = CsvFile(path)
    encoding = detect_encoding(source)
    dialect = detect_dialect(source, encoding)
    with read_rows(source, encoding, dialect) as (headers, rows):
        assert headers == ["Id", "Name"] and [r.values for r in rows] == [("1", "Zoë")]


def test_a_zip_of_csvs_offers_its_members(tmp_path):
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(EXPORTS / "pipedrive_deals.csv", "export/deals.csv")
        zf.writestr("export/organizations.csv", "Organization - ID,Organization - Name\n1,A\n")
        zf.writestr("__MACOSX/export/._deals.csv", "junk")
    assert [f.member for f in csv_files(archive)] == ["export/deals.csv",
                                                      "export/organizations.csv"]
    chosen = choose_file(archive, "opportunity")
    assert chosen.member == "export/deals.csv"
    assert detect_encoding(chosen) == "utf-8"


@pytest.mark.parametrize(("headers", "expected"), [
    (["Opportunity ID", "Opportunity Name", "Amount", "Stage", "Close Date", "Created Date"],
     {"source_id": "Opportunity ID", "name": "Opportunity Name", "amount": "Amount",
      "stage": "Stage", "close_date": "Close Date", "source_created_at": "Created Date"}),
    (["Record ID", "Deal Name", "Deal Stage", "Amount", "Close Date", "Last Modified Date"],
     {"source_id": "Record ID", "name": "Deal Name", "stage": "Deal Stage",
      "amount": "Amount", "close_date": "Close Date", "modified_at": "Last Modified Date"}),
    (["Deal - ID", "Deal - Title", "Deal - Value", "Deal - Owner", "Deal - Organization"],
     {"source_id": "Deal - ID", "name": "Deal - Title", "amount": "Deal - Value"}),
    (["Id", "Name", "AccountId", "StageName", "CloseDate", "IsWon", "Probabilty"],
     {"source_id": "Id", "name": "Name", "account_id": "AccountId", "stage": "StageName",
      "close_date": "CloseDate", "is_won": "IsWon", "probability": "Probabilty"}),
])
def test_headers_of_real_exports_map_to_the_common_model(headers, expected):
    found = {m.target: m.header for m in propose_columns("opportunity", headers)}
    assert found == expected


def test_a_mapping_round_trips_as_json_and_reports_what_does_not_fit():
    mapping = FileMapping("opportunity", "Id", {"amount": "Amount", "is_won": "Status"},
                          "Updated", ValueFormat(",", "DMY", "Europe/Berlin"),
                          {"is_won": {"won": "true", "lost": "false"}})
    assert FileMapping.from_json(mapping.as_json()) == mapping
    assert mapping.problems(["Id", "Amount", "Status"]) == ["no column 'Updated' in the file"]
    with pytest.raises(ValueError):
        FileMapping.from_json({"object": "opportunity", "id": "Id",
                               "format": {"decimal": ";"}})
