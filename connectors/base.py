"""The one interface every CRM adapter implements.

Modelled on Fivetran's Connector SDK contract (`update(configuration, state)`
yielding upserts, deletes and checkpoints): an adapter reads one common object
from a saved state and yields what changed, then a checkpoint whose state
covers everything yielded before it. The sync engine commits each checkpoint
in the same transaction as the records it covers, so a crash can never move a
cursor past data that was not saved.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Upsert:
    """A record as the CRM has it now, mapped to the common model."""

    source_id: str
    modified_at: datetime  # timezone-aware UTC; the CRM's own modification stamp
    fields: Mapping[str, Any]  # common-model columns (connectors.common_model)
    raw: Mapping[str, Any]  # the full source record, custom fields included
    is_deleted: bool = False  # soft-deleted in the CRM (still readable there)


@dataclass(frozen=True)
class Delete:
    """A record the CRM reports as deleted, when only its id is known."""

    source_id: str
    deleted_at: datetime


@dataclass(frozen=True)
class Quarantine:
    """A record that cannot be mapped: kept with the reason, never dropped, retried later."""

    source_id: str | None
    modified_at: datetime | None
    raw: Mapping[str, Any]
    reason: str


@dataclass(frozen=True)
class LiveIds:
    """Every id the CRM holds live for the object, as of `as_of` (its clock).

    Sent when the CRM's delete log no longer covers the gap since the last
    sync (or on a scheduled reconciliation): a warehouse row that is live,
    older than `as_of` and absent here was deleted in the CRM.
    """

    source_ids: frozenset[str]
    as_of: datetime


@dataclass(frozen=True)
class Checkpoint:
    """Everything yielded before this point is covered by `state`."""

    state: Mapping[str, Any]


Record = Upsert | Delete | Quarantine
Change = Upsert | Delete | Quarantine | LiveIds | Checkpoint


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str
    field: str | None = None  # the credential field to fix, when one is to blame
    hint: str | None = None


@dataclass(frozen=True)
class ObjectInfo:
    name: str  # the common object name (a key of COMMON_OBJECTS)
    source_name: str  # what the CRM calls it, e.g. "OpportunityLineItem"
    extra: Mapping[str, Any] = field(default_factory=dict)


class ConnectorError(Exception):
    """A failure a person can act on; `kind` says who should act."""

    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class AuthenticationError(ConnectorError):
    kind = "credentials"


class QuotaExceeded(ConnectorError):
    """The CRM's API budget is spent: stop cleanly, keep the checkpoint, resume later."""

    kind = "quota"


class SourceUnavailable(ConnectorError):
    kind = "outage"


class Connector(ABC):
    """A CRM adapter. Instances hold decrypted credentials: keep them short-lived."""

    crm_type: str
    # Whether `read` looks at what the warehouse committed (a feed settles its input once
    # its last page is in): the sync engine then never reads ahead of its own writes.
    reads_warehouse: bool = False

    @abstractmethod
    def check(self) -> CheckResult:
        """Log in and make one cheap call; never raises for bad credentials."""

    @abstractmethod
    def objects(self) -> list[ObjectInfo]:
        """The common objects this CRM offers."""

    @abstractmethod
    def count(self, object_name: str) -> int:
        """How many live (not deleted) records of the object the CRM holds now."""

    @abstractmethod
    def read(
        self, object_name: str, state: Mapping[str, Any] | None, *, reconcile: bool = False
    ) -> Iterator[Change]:
        """Yield changes since `state` (None: from the beginning), with checkpoints.

        Each checkpoint's state covers everything yielded before it. By convention
        the state holds `cursor` and `fields` (the source fields read, so the engine
        can report schema drift). With `reconcile`, or when the CRM's delete log no
        longer covers the gap, a `LiveIds` is yielded before the last checkpoint.
        """

    @abstractmethod
    def map_record(self, object_name: str, record: Mapping[str, Any]) -> Upsert | Quarantine:
        """Map one raw source record; used to retry quarantined records after a fix."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release network resources."""

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
