"""One pass of the agent: every mapped object's changes since the checkpoint, pushed in
batches, the checkpoint saved after each acknowledged batch (never before).

Each batch's `webhook-id` is derived from the destination, the object, how many batches
of it were acknowledged before, and the batch's body: after a crash between the server's
acknowledgment and the checkpoint's save, the same batch is built again with the same id
and the server answers it as a replay; a batch with other contents (the source changed
meanwhile) gets another id and is applied — it is newer. `--dry-run` reads and checks the
same batches and sends nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from accrue.agent import checkpoint as checkpoints
from accrue.agent.client import PushClient
from accrue.agent.mapping import AgentConfig, MappingError
from accrue.agent.sources import Change, open_source
from accrue.file_import.reading import FileImportError
from accrue.file_import.values import ValueProblem
from accrue.push.inbox import record_problems

MAX_BODY_BYTES = 4 * 1024 * 1024  # under the server's 5 MB: a larger batch is split
SHOWN_PROBLEMS = 10


class AgentError(RuntimeError):
    """Something the person running the agent must fix; the message says what."""


class SourceUnavailable(AgentError):
    """The source database could not be read just now (down, locked): `--every` tries
    again at the next round; the checkpoint keeps what was acknowledged."""


def read_secret(config: AgentConfig) -> str:
    """The push secret from an environment variable or a file only its owner can read."""
    if config.secret_env is not None:
        secret = os.environ.get(config.secret_env, "").strip()
        if not secret:
            raise AgentError(f"the environment variable {config.secret_env} (secret_env in "
                             f"{config.path}) is not set: set it to the tenant's push secret")
        return _checked(secret, f"the environment variable {config.secret_env}")
    path = config.secret_file
    assert path is not None
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise AgentError(f"{path} can be read by others (mode {stat.filemode(mode)}): run "
                             f"`chmod 600 {path}` so only its owner can")
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise AgentError(f"cannot read the secret file {path} ({exc.strerror})") from None
    if not secret:
        raise AgentError(f"the secret file {path} is empty")
    return _checked(secret, f"the secret file {path}")


def _checked(secret: str, where: str) -> str:
    """A push secret's shape (whsec_ + base64), checked before any use."""
    try:
        Webhook(secret)
    except (ValueError, TypeError):  # binascii.Error is a ValueError
        raise AgentError(f"{where} does not hold a push secret (whsec_...): copy it as "
                         "`accrue push credentials` printed it") from None
    return secret


def database_url(config: AgentConfig) -> str | None:
    if config.exports is not None:
        return None
    if config.database_url_env is not None:
        url = os.environ.get(config.database_url_env, "").strip()
        if not url:
            raise AgentError(f"the environment variable {config.database_url_env} "
                             f"(database_url_env in {config.path}) is not set")
        return url
    return config.database_url


def shown_url(url: str) -> str:
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(not a database URL)"


def webhook_id(config: AgentConfig, object_name: str, acknowledged: int, body: str) -> str:
    seed = f"{config.endpoint}\n{object_name}\n{acknowledged}\n{body}"
    return "agent_" + hashlib.sha256(seed.encode()).hexdigest()[:40]


@dataclass
class ObjectSummary:
    changes: int = 0
    deletes: int = 0
    batches: int = 0
    replays: int = 0
    retries: int = 0


@dataclass
class Summary:
    objects: dict[str, ObjectSummary] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def of(self, object_name: str) -> ObjectSummary:
        return self.objects.setdefault(object_name, ObjectSummary())

    @property
    def changes(self) -> int:
        return sum(o.changes for o in self.objects.values())

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would push" if dry_run else "pushed"
        out = [f"  {name}: {verb} {s.changes:,} change(s) ({s.deletes:,} deletes) in "
               f"{s.batches:,} batch(es)" + (f", {s.replays} acknowledged before (replays)"
                                             if s.replays else "")
               for name, s in self.objects.items() if s.changes]
        return out or [f"  nothing to push: every mapped object is up to date ({verb} 0)"]


def _batches(changes: Iterator[Change], size: int) -> Iterator[list[Change]]:
    while batch := list(itertools.islice(changes, size)):
        yield batch


def _body(batch: list[Change]) -> str:
    return json.dumps({"records": [c.record for c in batch]}, separators=(",", ":"))


def _fitting(batch: list[Change]) -> Iterator[tuple[list[Change], str]]:
    """The batch, split in halves until each body is under MAX_BODY_BYTES."""
    body = _body(batch)
    if len(body.encode()) <= MAX_BODY_BYTES or len(batch) == 1:
        yield batch, body
        return
    half = len(batch) // 2
    yield from _fitting(batch[:half])
    yield from _fitting(batch[half:])


def _check(batch: list[Change], label: str) -> None:
    """The push API's own record rules, before anything is sent."""
    problems = [f"  {c.record.get('object')} {c.record.get('id')}: {'; '.join(p)}"
                for c in batch if (p := record_problems(c.record))]
    if problems:
        shown = "\n".join(problems[:SHOWN_PROBLEMS])
        more = len(problems) - SHOWN_PROBLEMS
        raise AgentError(f"{label}: {len(problems)} record(s) the push API would refuse:\n"
                         f"{shown}" + (f"\n  ... and {more} more" if more > 0 else ""))


def _acknowledged(state: checkpoints.ObjectState, batch: list[Change]) -> None:
    for change in batch:
        source_id = change.record["id"]
        if change.forget:
            state.seen.pop(source_id, None)
        elif change.digest is not None:
            state.seen[source_id] = change.digest
        if change.key is not None:
            state.after = change.key
    state.batches += 1
    state.pending = []


def run_once(config: AgentConfig, client: PushClient | None, *, dry_run: bool = False,
             say: Callable[[str], None] = print) -> Summary:
    """Push every change since the checkpoint (with `dry_run`, only read and check them)."""
    if client is None and not dry_run:
        raise ValueError("a client is needed unless dry_run")
    try:
        checkpoint = checkpoints.load(config.checkpoint, config.endpoint)
    except checkpoints.CheckpointError as exc:
        raise AgentError(str(exc)) from None
    summary = Summary()
    try:
        source = open_source(config, database_url(config))
    except (sa.exc.ArgumentError, ImportError) as exc:
        raise AgentError(f"{config.path}: cannot open the database: {exc}") from None
    try:
        for mapping in config.objects:
            state = checkpoint.state(mapping.object)
            state.recover()
            counts = summary.of(mapping.object)
            for unit in source.units(mapping, state):
                for batch in _batches(unit.changes, config.batch_size):
                    _check(batch, f"{mapping.object} from {unit.label}")
                    for part, body in _fitting(batch):
                        counts.changes += len(part)
                        counts.deletes += sum(c.record["action"] == "delete" for c in part)
                        counts.batches += 1
                        if dry_run or client is None:
                            if counts.batches == 1:
                                say(f"{mapping.object}: e.g. {json.dumps(part[0].record)}")
                            continue
                        tracked = [c.record["id"] for c in part if c.digest is not None]
                        if tracked:  # written ahead: see ObjectState.recover
                            state.pending = tracked
                            checkpoint.save()
                        ack = client.post(webhook_id(config, mapping.object, state.batches,
                                                     body), body)
                        counts.replays += ack.replay
                        counts.retries += ack.attempts - 1
                        _acknowledged(state, part)
                        checkpoint.save()
                if unit.file and not dry_run:
                    state.files.append(unit.file)
                    checkpoint.save()
                summary.warnings += [f"{mapping.object}: {w}" for w in unit.warnings]
    except sa.exc.OperationalError as exc:
        raise SourceUnavailable(f"reading {shown_url(database_url(config) or '')} failed: "
                                f"{str(exc.orig).splitlines()[0]}") from None
    except sa.exc.SQLAlchemyError as exc:
        raise AgentError(f"reading {shown_url(database_url(config) or '')} failed: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    except (MappingError, FileImportError, ValueProblem) as exc:
        raise AgentError(str(exc)) from None
    finally:
        source.close()
    return summary


def make_client(config: AgentConfig) -> PushClient:
    return PushClient(config.endpoint, config.client_id, read_secret(config),
                      timeout=config.timeout_seconds, max_attempts=config.max_attempts)


def describe(config: AgentConfig) -> str:
    where = (f"exports in {config.exports}" if config.exports is not None
             else shown_url(database_url(config) or ""))
    return f"{where} -> {config.endpoint}"

