"""dlt loading the sandbox org the way dlt's verified Salesforce source does (a child of
benchmarks/loader_compare.py).

What the verified source does, and so what this runner does (our own code, its behaviour):

* one dlt resource per sObject, every field `describe` lists except compound fields
  (an address is read through its components); `attributes` dropped; datetime fields
  re-formatted to ISO strings with pendulum;
* User, Contact, Lead, Product2 and PricebookEntry are `replace`: reloaded whole every run;
* Opportunity, OpportunityLineItem, Task and Event are `merge` with an incremental cursor
  on `SystemModstamp`, Account on `LastModifiedDate` (`WHERE cursor > last value ORDER
  BY cursor`); no primary key is declared, so dlt appends what a merge would replace;
* it reads through Bulk API 1.0 and falls back to REST `query` + `queryMore` where the org
  has no Async API. The sandbox serves Bulk API 2.0 only, so this runner takes that REST
  path (which, unlike Bulk `queryAll`, returns no deleted records).

Destinations as a dlt user would pick them, with their defaults: `sqlalchemy` for SQLite
(dlt keeps the dataset in a file beside the one named) and `postgres`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from benchmarks.support.measure import peak_rss_mb
from benchmarks.support.opportunity_changes import sandbox_client
from benchmarks.support.processes import report_result

# Before dlt is imported: no telemetry (no network here) and no progress chatter.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")

DATASET = "salesforce"
Disposition = Literal["replace", "merge"]
# (dlt table, sObject, write disposition, incremental cursor), as the verified source has them.
RESOURCES: tuple[tuple[str, str, Disposition, str | None], ...] = (
    ("sf_user", "User", "replace", None),
    ("account", "Account", "merge", "LastModifiedDate"),
    ("contact", "Contact", "replace", None),
    ("lead", "Lead", "replace", None),
    ("opportunity", "Opportunity", "merge", "SystemModstamp"),
    ("opportunity_line_item", "OpportunityLineItem", "merge", "SystemModstamp"),
    ("product_2", "Product2", "replace", None),
    ("pricebook_entry", "PricebookEntry", "replace", None),
    ("task", "Task", "merge", "SystemModstamp"),
    ("event", "Event", "merge", "SystemModstamp"),
)
# Which of our common objects each dlt table holds (the row checks compare per object).
COMMON_OBJECT_OF = {
    "sf_user": "user", "account": "account", "contact": "contact", "lead": "lead",
    "opportunity": "opportunity", "opportunity_line_item": "opportunity_line",
    "product_2": "product", "pricebook_entry": "price_book_entry",
    "task": "activity", "event": "activity",
}


class Counter:
    records = 0


def _records(sf: Any, sobject: str, cursor: str | None, last_value: str | None,
             counter: Counter) -> Iterator[dict[str, Any]]:
    """Every record of `sobject` (after `last_value` of `cursor`), REST page by page."""
    import pendulum

    fields = getattr(sf, sobject).describe()["fields"]
    compound = {f["compoundFieldName"] for f in fields if f.get("compoundFieldName")} - {"Name"}
    datetimes = [f["name"] for f in fields if f["type"] == "datetime"]
    names = [f["name"] for f in fields if f["name"] not in compound]
    soql = f"SELECT {', '.join(names)} FROM {sobject}"
    if cursor is not None:
        if last_value:
            soql += f" WHERE {cursor} > {last_value}"
        soql += f" ORDER BY {cursor} ASC"
    page = sf.query(soql)
    while True:
        for record in page["records"]:
            record.pop("attributes", None)
            for name in datetimes:
                if record.get(name):
                    moment = pendulum.parse(record[name])
                    if not isinstance(moment, pendulum.DateTime):
                        raise TypeError(f"{sobject}.{name} is no datetime: {record[name]!r}")
                    record[name] = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            counter.records += 1
            yield record
        if page["done"]:
            return
        page = sf.query_more(page["nextRecordsUrl"], identifier_is_url=True)


def _resource(sf: Any, table: str, sobject: str, disposition: Disposition, cursor: str | None,
              counter: Counter) -> Any:
    import dlt

    if cursor is None:
        def every_row() -> Iterator[dict[str, Any]]:
            yield from _records(sf, sobject, None, None, counter)

        return dlt.resource(every_row, name=table, write_disposition=disposition)

    since: dlt.sources.incremental[str] = dlt.sources.incremental(cursor, initial_value=None)

    def rows_since(updated: dlt.sources.incremental[str] = since) -> Iterator[dict[str, Any]]:
        yield from _records(sf, sobject, cursor, updated.last_value, counter)

    return dlt.resource(rows_since, name=table, write_disposition=disposition)


def _destination(backend: str, url: str) -> Any:
    import dlt

    if backend == "sqlite":
        return dlt.destinations.sqlalchemy(credentials=url)
    parsed = sa.make_url(url).set(drivername="postgresql")
    if not parsed.password:  # dlt insists on one; a server with trust auth ignores it
        parsed = parsed.set(password="unused")
    return dlt.destinations.postgres(credentials=parsed.render_as_string(hide_password=False))


def _loaded_ids(pipeline: Any) -> dict[str, list[str]]:
    """The `id` of every row in each dlt table, by common object (a missing table: none)."""
    loaded: dict[str, list[str]] = {}
    with pipeline.sql_client() as client:
        for table, _sobject, _disposition, _cursor in RESOURCES:
            ids = loaded.setdefault(COMMON_OBJECT_OF[table], [])
            if not client.has_dataset():
                continue
            name = client.make_qualified_table_name(table)
            try:
                rows = client.execute_sql(f"SELECT id FROM {name}")
            except Exception:  # the table was never created: the object had no records
                continue
            ids.extend(str(row[0]) for row in rows or [])
    return loaded


def run(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One dlt run (the first is the initial load), timed from login to the end of the load."""
    import dlt

    counter = Counter()
    started = time.perf_counter()
    with sandbox_client(spec["sandbox_url"], spec) as sf:

        @dlt.source(name="salesforce")
        def salesforce() -> Any:
            return [_resource(sf, *entry, counter) for entry in RESOURCES]

        pipeline = dlt.pipeline(
            pipeline_name=f"bench_{spec['backend']}",
            pipelines_dir=spec["pipelines_dir"],
            destination=_destination(spec["backend"], spec["destination_url"]),
            dataset_name=DATASET,
        )
        pipeline.run(salesforce())
        wall = time.perf_counter() - started
        peak = peak_rss_mb()
    Path(spec["ids_path"]).write_text(json.dumps(_loaded_ids(pipeline)))
    return {"records": counter.records, "wall_seconds": wall, "peak_rss_mb": peak}


def main() -> None:
    spec = json.loads(sys.stdin.read())
    report_result(run(spec))


if __name__ == "__main__":
    main()
