"""The agent's local checkpoint: what it has pushed and had acknowledged, per object.

A JSON file next to the mapping file, rewritten whole after each acknowledged batch:
written to a temporary file in the same folder, flushed to disk, then renamed over the
old one (a rename is atomic), so a crash at any moment leaves the previous checkpoint or
the new one, never half of one. A batch whose acknowledgment was not saved is built and
sent again with the same `webhook-id` (`ObjectState.batches` is part of it), and the
server answers it as a replay without storing it twice.

Per object: `after` is the (updated_at, id) of the last record acknowledged (incremental
reads continue after it); `seen` maps each id pushed to a digest of what was pushed
(kept only where the object needs it: snapshot comparison or deletes by absence — its
size grows with the table, about 60 bytes an id); `files` the exports already pushed;
`pending` the ids of a batch about to be sent, saved first where `seen` is kept: a batch
the server stored just before the agent died may hold a record deleted from the source
before the agent runs again, which no later read would show (see `ObjectState.recover`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

FORMAT = 1
UNKNOWN_DIGEST = "?"  # equals no record's digest


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (the agent stops rather than push everything
    again, or worse skip something)."""


def encode_value(value: Any) -> Any:
    """A key value (an updated-at or id) as JSON that `decode_value` gives back exactly."""
    if isinstance(value, datetime):
        return {"datetime": value.isoformat()}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    return value


def decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        if "datetime" in value:
            return datetime.fromisoformat(value["datetime"])
        if "date" in value:
            return date.fromisoformat(value["date"])
    return value


@dataclass
class ObjectState:
    after: tuple[Any, Any] | None = None  # (updated_at, id) of the last acknowledged record
    seen: dict[str, str] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)  # fingerprints of exports pushed whole
    batches: int = 0  # acknowledged batches: part of each webhook-id
    # Ids of the batch in flight, saved before it is sent (objects that keep `seen`): see
    # `recover`.
    pending: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"after": None if self.after is None else [encode_value(v) for v in self.after],
                "seen": self.seen, "files": self.files, "batches": self.batches,
                "pending": self.pending}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ObjectState:
        after = data.get("after")
        return cls(after=None if after is None else (decode_value(after[0]),
                                                     decode_value(after[1])),
                   seen=dict(data.get("seen") or {}), files=list(data.get("files") or []),
                   batches=int(data.get("batches") or 0),
                   pending=list(data.get("pending") or []))

    def recover(self) -> None:
        """After a crash with a batch in flight: its ids may have reached the warehouse, so
        they count as pushed (`seen`) with a digest that matches nothing. A row still there
        is pushed again; a row gone meanwhile is pushed as a delete, where it would
        otherwise stay live in the warehouse for ever."""
        for source_id in self.pending:
            self.seen.setdefault(source_id, UNKNOWN_DIGEST)
        self.pending = []


@dataclass
class Checkpoint:
    path: Path
    endpoint: str
    objects: dict[str, ObjectState] = field(default_factory=dict)

    def state(self, object_name: str) -> ObjectState:
        return self.objects.setdefault(object_name, ObjectState())

    def save(self) -> None:
        """Write atomically: temporary file, fsync, rename."""
        document = {"format": FORMAT, "endpoint": self.endpoint,
                    "objects": {k: v.as_json() for k, v in sorted(self.objects.items())}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.",
                                             dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(document, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def load(path: Path, endpoint: str) -> Checkpoint:
    """The checkpoint at `path` (an empty one if there is none yet).

    A checkpoint written for another endpoint (another server or tenant) is refused:
    continuing from it would skip records the new destination never received.
    """
    if not path.exists():
        return Checkpoint(path, endpoint)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("format") != FORMAT:
            raise ValueError(f"format {document.get('format')!r}, expected {FORMAT}")
        objects = {k: ObjectState.from_json(v) for k, v in document["objects"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise CheckpointError(
            f"{path}: cannot read the checkpoint ({exc}); move it away to push everything "
            "again (replays are harmless)") from None
    if document.get("endpoint") != endpoint:
        raise CheckpointError(
            f"{path} was written for {document.get('endpoint')}, this mapping pushes to "
            f"{endpoint}: use another checkpoint file (setting 'checkpoint') for a new "
            "destination")
    return Checkpoint(path, endpoint, objects)
