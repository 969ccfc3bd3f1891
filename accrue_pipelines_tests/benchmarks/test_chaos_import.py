"""The short import chaos run inside `make test` (the full one is `make chaos`,
docs/chaos.md): `accrue import` SIGKILLed while it writes a three-page export, run to
completion, then every record compared with the file; and the comparison is not
vacuous: a value changed behind the import, a deleted flag and a doubled version are caught.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import sqlalchemy as sa

from accrue.db import make_engine
from accrue.schema import crm_change_log, object_table
from accrue.warehouse import Warehouse
from benchmarks.chaos_import import OBJECT, Crm, compare_with_crm, prepare, run_trial

TENANT = "chaos-import-sqlite"


def test_a_killed_import_lands_the_file_exactly_and_the_check_catches_a_wrong_value(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'warehouse.db'}"
    prepare(url, TENANT)
    crm = Crm(random.Random("test"))
    # Three pages of up to 2,000 rows; seed 2 kills just after the first page's commit.
    options = argparse.Namespace(seed=2, opportunities=4500, kills=1)
    result = run_trial("sqlite", url, tmp_path, crm, 1, options)
    assert result.kills == 1 and result.runs == 2 and result.resumed == 1
    assert "(resumed after line " in (tmp_path / "import-sqlite.log").read_text()
    assert result.mismatches == [] and result.rows == 4500 and result.quarantined == 0

    engine = make_engine(url)
    try:
        table = object_table(OBJECT)
        wrong, gone = sorted(crm.records)[:2]
        with engine.begin() as conn:
            conn.execute(sa.update(table).where(table.c.source_id == wrong)
                         .values(amount=table.c.amount + 0.01))
            conn.execute(sa.update(table).where(table.c.source_id == gone)
                         .values(is_deleted=True))
            logged = conn.execute(sa.select(crm_change_log)
                                  .where(crm_change_log.c.source_id == sorted(crm.records)[2])
                                  ).mappings().one()
            conn.execute(sa.insert(crm_change_log).values(
                {**{k: v for k, v in logged.items() if k != "id"},
                 "source_modified_at": logged["source_modified_at"].replace(year=2000)}))
        comparison = compare_with_crm(Warehouse(engine), TENANT, crm)
    finally:
        engine.dispose()
    kinds = sorted((m.kind, m.source_id) for m in comparison.mismatches)
    assert kinds == [("deleted_flag", gone), ("fields", wrong),
                     ("history", sorted(crm.records)[2])]
    assert "amount" in str(next(m for m in comparison.mismatches if m.kind == "fields"))
