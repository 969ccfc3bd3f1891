"""The production instance storage holds its PostgreSQL connections open.

Dagster's stock PostgreSQL storage connects once per query; PooledPostgresStorage
(deploy/dagster/*.yaml) reuses one connection per storage. Both must store the same
events; only the number of connections differs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import dagster as dg
import pytest
import sqlalchemy as sa

from accrue import db

EVENTS = 40


@pytest.fixture
def instance_db_url() -> Iterator[str]:
    server = os.environ.get("ACCRUE_TEST_POSTGRES_URL", "").strip()
    if not server:
        pytest.skip("needs PostgreSQL: set ACCRUE_TEST_POSTGRES_URL (.ci/run does)")
    url = db.create_database(server, "accrue_instance")
    try:
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; Dagster's storage ships psycopg2.
        yield sa.make_url(url).set(drivername="postgresql+psycopg2").render_as_string(
            hide_password=False)
    finally:
        db.drop_database(url)


def _connections_while_storing_events(storage: dict[str, object], database: str,
                                      asset: str) -> int:
    opened: list[str] = []

    def count(dbapi_connection: object, _record: object) -> None:
        if dbapi_connection.info.dbname == database:  # type: ignore[attr-defined]
            opened.append(database)

    with dg.instance_for_test(overrides={"storage": storage}) as instance:
        instance.report_runless_asset_event(dg.AssetMaterialization("warm_up"))
        sa.event.listen(sa.engine.Engine, "connect", count)
        try:
            for i in range(EVENTS):
                instance.report_runless_asset_event(
                    dg.AssetMaterialization(asset, metadata={"i": i}))
        finally:
            sa.event.remove(sa.engine.Engine, "connect", count)
        stored = instance.fetch_materializations(dg.AssetKey(asset), limit=EVENTS + 1)
        assert len(stored.records) == EVENTS  # every event landed
    return len(opened)


def test_pooled_storage_reuses_one_connection_where_dagster_opens_one_per_query(
    instance_db_url: str,
) -> None:
    database = sa.make_url(instance_db_url).database or ""
    config = {"postgres_url": instance_db_url}
    pooled = _connections_while_storing_events(
        {"custom": {"module": "accrue_pipelines.platform.instance_storage",
                    "class": "PooledPostgresStorage", "config": config}}, database, "pooled")
    stock = _connections_while_storing_events({"postgres": config}, database, "stock")
    assert stock >= EVENTS  # the measure sees Dagster's connection per query
    assert pooled <= 2, pooled
