"""What one `apply`, or a whole sync, did: the counts every part of the warehouse reports."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WriteStats:
    """What one `apply` (or, summed with +, one sync) did."""

    upserted: int = 0
    deleted: int = 0  # includes rows reconciliation found gone from the CRM
    skipped_stale: int = 0  # older than what is stored, or superseded within the same page
    quarantined: int = 0  # kept in crm_quarantine instead (not stored faithfully otherwise)

    @property
    def total(self) -> int:
        return self.upserted + self.deleted + self.skipped_stale + self.quarantined

    def __add__(self, other: WriteStats) -> WriteStats:
        return WriteStats(
            self.upserted + other.upserted,
            self.deleted + other.deleted,
            self.skipped_stale + other.skipped_stale,
            self.quarantined + other.quarantined,
        )
