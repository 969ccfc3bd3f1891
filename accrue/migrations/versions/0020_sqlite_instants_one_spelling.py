"""SQLite: every instant the bulk write path stored spelled as SQLAlchemy spells it.

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30

Since the bulk write path (issue 15) the crm_* rows and the change log took their
instants through sqlite3's default adapter: "2026-01-01 00:00:00+00:00" (no fraction when
it is zero, an offset) instead of "2026-01-01 00:00:00.000000", the text every other
write and every bound parameter uses. SQLite compares them as text, so an instant
equal to a bound one sorted before or after it (a range read's edge, the upsert's
"newer wins" against a row written the other way). The offset was always +00:00 (the
path converted to UTC first), so the text is made the other spelling of the same
instant; nothing else changes. PostgreSQL stores timestamptz, not text: no change.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables the bulk path writes, at this revision (frozen).
TABLES = (
    "crm_account", "crm_contact", "crm_lead", "crm_opportunity", "crm_opportunity_line",
    "crm_product", "crm_price_book_entry", "crm_user", "crm_activity", "crm_change_log",
)
# "YYYY-MM-DD HH:MM:SS+00:00" (25 characters) or "YYYY-MM-DD HH:MM:SS.ffffff+00:00" (32).
_RESPELL = ("CASE length({c}) WHEN 25 THEN substr({c}, 1, 19) || '.000000' "
            "WHEN 32 THEN substr({c}, 1, 26) ELSE {c} END")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    for table in TABLES:
        columns = [row[1] for row in bind.exec_driver_sql(f"PRAGMA table_info({table})")
                   if str(row[2]).upper() == "DATETIME"]
        for column in columns:
            quoted = f'"{column}"'
            respelled = _RESPELL.format(c=quoted)
            bind.exec_driver_sql(
                f"UPDATE {table} SET {quoted} = {respelled} WHERE {quoted} LIKE '%+00:00'")


def downgrade() -> None:
    """Nothing to undo: the text is the spelling every other write already used."""
