"""The push agent (issue 13, part 3): a customer's database or export folder pushed through
the real push API (the Flask app) and processed; the warehouse then equals the source,
record by record, after creates, updates and deletes. Also: the checkpoint moves only
after an acknowledgment, a batch re-sent after a crash is a replay, dry runs send
nothing, 429/5xx are retried, 400/401 stop with the server's words, the secret never
shows, and mapping mistakes are named. Warehouse on SQLite and PostgreSQL; the source
database on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import requests
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import Engine

from accrue import db
from accrue.agent import checkpoint, cli, mapping, runner
from accrue.agent.client import PushClient, PushRefused, RetryablePushError
from accrue.push.credentials import IssuedSecret
from accrue.push.process import process_inbox
from accrue.warehouse import Warehouse
from accrue_pipelines_tests.concierge.test_concierge_app import make_app
from accrue_pipelines_tests.concierge.test_push_api import inbox_rows, make_push_tenant
from accrue_pipelines_tests.fixtures_warehouse import POSTGRES_URL_ENV
from benchmarks import chaos_push
from benchmarks.chaos_push import compare_with_source
from connectors.sandbox_kit import agent_db

SECRET_ENV = "TEST_AGENT_PUSH_SECRET"
SOURCE_ENV = "TEST_AGENT_SOURCE_URL"


class Answer:
    """What `requests` returns, enough for the agent."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        self.status_code = status
        self._body = body
        self.headers = headers or {}

    def json(self) -> Any:
        if self._body is None:
            raise ValueError("no JSON")
        return self._body


class FlaskSession:
    """The agent's HTTP session, posting into the Flask app in process."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client
        self.posts = 0

    def post(self, url: str, *, data: bytes, headers: dict[str, str], timeout: float) -> Answer:
        self.posts += 1
        response = self.client.post(urlsplit(url).path, data=data, headers=headers)
        return Answer(response.status_code, response.get_json(silent=True),
                      dict(response.headers))


class Scripted:
    """A session answering from a script: Answer objects or exceptions, in turn."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.sent: list[dict[str, str]] = []

    def post(self, url: str, *, data: bytes, headers: dict[str, str], timeout: float) -> Answer:
        self.sent.append(headers)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def app(database_url: str) -> Flask:
    return make_app(database_url)


@pytest.fixture(params=["sqlite", "postgresql"], ids=["source-sqlite", "source-postgresql"])
def source_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'c2crm.db'}"
        return
    server = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if not server:
        pytest.skip(f"a PostgreSQL source needs {POSTGRES_URL_ENV}")
    url = db.create_database(server, "agent_source")
    try:
        yield url
    finally:
        db.drop_database(url)


@pytest.fixture
def issued(engine: Engine, tenant_id: str) -> IssuedSecret:
    return make_push_tenant(engine, tenant_id)


def write_config(tmp_path: Path, tenant_id: str, issued: IssuedSecret, source_url: str,
                 monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> mapping.AgentConfig:
    monkeypatch.setenv(SECRET_ENV, issued.secret)
    monkeypatch.setenv(SOURCE_ENV, source_url)
    path = tmp_path / "agent.toml"
    path.write_text(agent_db.mapping_toml(
        url="http://concierge.test", tenant=tenant_id, client_id=issued.client_id,
        secret_env=SECRET_ENV, database_url_env=SOURCE_ENV, **kwargs))
    return mapping.load(path)


def flask_client(config: mapping.AgentConfig, app: Flask, **kwargs: Any) -> PushClient:
    return PushClient(config.endpoint, config.client_id, runner.read_secret(config),
                      session=FlaskSession(app.test_client()), **kwargs)


def assert_equal(engine: Engine, tenant_id: str, source: Engine) -> int:
    process_inbox(engine, tenant_id)
    comparison = compare_with_source(Warehouse(engine), tenant_id, source)
    assert comparison.mismatches == [], [str(m) for m in comparison.mismatches[:10]]
    assert comparison.quarantined == 0
    return comparison.rows


def test_warehouse_equals_the_source_after_creates_updates_and_deletes(
        app: Flask, engine: Engine, tenant_id: str, issued: IssuedSecret, source_url: str,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = agent_db.build(source_url, 40, seed=3)
    config = write_config(tmp_path, tenant_id, issued, source_url, monkeypatch, batch_size=25)
    client = flask_client(config, app)
    first = runner.run_once(config, client)
    assert first.of("opportunity").changes == 40 and first.of("opportunity").batches == 2
    rows = assert_equal(engine, tenant_id, source)
    assert rows > 60
    mutator = agent_db.Mutator(source, seed=5)
    wanted = {"remove_deal", "restore_deal", "drop_person", "new_deal", "new_person",
              "edit_deal", "rename_user"}
    done: list[str] = []
    while not wanted <= set(done) and len(done) < 400:
        done.append(mutator.step())
    assert wanted <= set(done)
    with source.begin() as conn:  # a person pushed before, deleted for real
        conn.execute(agent_db.PEOPLE.delete().where(agent_db.PEOPLE.c.person_no == "PE-000001"))
    second = runner.run_once(config, client)
    assert 0 < second.changes <= len(done) + 1  # only what changed: one record a step
    assert second.of("contact").deletes > 0 and second.of("opportunity").deletes > 0
    assert_equal(engine, tenant_id, source)
    # Nothing changed since: nothing is sent.
    posts = client.session.posts
    assert runner.run_once(config, client).changes == 0
    assert client.session.posts == posts
    source.dispose()


class Crash(BaseException):
    """The agent dies (SIGKILL): nothing after this point runs."""


def test_a_crash_between_ack_and_checkpoint_is_a_replay_not_a_second_copy(
        app: Flask, engine: Engine, tenant_id: str, issued: IssuedSecret, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    source_url = f"sqlite:///{tmp_path / 'c2crm.db'}"
    source = agent_db.build(source_url, 30, seed=4)
    config = write_config(tmp_path, tenant_id, issued, source_url, monkeypatch, batch_size=10)
    client = flask_client(config, app)
    acknowledged = 0
    real = runner._acknowledged

    def crash_at_third_ack(state: checkpoint.ObjectState, batch: list[Any]) -> None:
        nonlocal acknowledged
        acknowledged += 1
        if acknowledged == 3:
            raise Crash  # the server acknowledged batch 3; the agent dies before saving
        real(state, batch)

    monkeypatch.setattr(runner, "_acknowledged", crash_at_third_ack)
    with pytest.raises(Crash):
        runner.run_once(config, client)
    stored = len(inbox_rows(engine, tenant_id))
    assert stored == 3
    saved = json.loads(config.checkpoint.read_text())
    assert saved["objects"]["contact"]["batches"] == 1  # batch 3 is not in the checkpoint
    monkeypatch.setattr(runner, "_acknowledged", real)
    again = runner.run_once(config, client)
    assert sum(s.replays for s in again.objects.values()) == 1
    batches = sum(s.batches for s in again.objects.values())
    assert len(inbox_rows(engine, tenant_id)) == stored + batches - 1
    assert_equal(engine, tenant_id, source)


def test_a_record_stored_by_a_crashed_push_then_deleted_is_deleted_in_the_warehouse(
        app: Flask, engine: Engine, tenant_id: str, issued: IssuedSecret, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The server stores a batch of people, the agent dies before it hears so, and one of
    them is deleted from the source before the agent runs again: no later read shows that
    row, so only the ids saved before sending (`pending`) make its delete be pushed."""
    source_url = f"sqlite:///{tmp_path / 'c2crm.db'}"
    source = agent_db.build(source_url, 20, seed=6)
    config = write_config(tmp_path, tenant_id, issued, source_url, monkeypatch)
    client = flask_client(config, app)
    real_post = client.post
    sent: list[dict[str, Any]] = []

    def post_then_die(webhook_id: str, body: str) -> Any:
        ack = real_post(webhook_id, body)
        records = json.loads(body)["records"]
        if records[0]["object"] == "contact":
            sent.extend(records)
            raise Crash  # stored by the server; the agent never hears it
        return ack

    monkeypatch.setattr(client, "post", post_then_die)
    with pytest.raises(Crash):
        runner.run_once(config, client)
    gone = sent[0]["id"]
    with source.begin() as conn:
        conn.execute(agent_db.PEOPLE.delete().where(agent_db.PEOPLE.c.person_no == gone))
    monkeypatch.setattr(client, "post", real_post)
    summary = runner.run_once(config, client)
    assert summary.of("contact").deletes == 1
    assert_equal(engine, tenant_id, source)  # `gone` is held deleted, not live


def test_the_checkpoint_moves_only_after_an_acknowledgment(
        tmp_path: Path, tenant_id: str, issued: IssuedSecret,
        monkeypatch: pytest.MonkeyPatch) -> None:
    source_url = f"sqlite:///{tmp_path / 'c2crm.db'}"
    agent_db.build(source_url, 10, seed=1)
    config = write_config(tmp_path, tenant_id, issued, source_url, monkeypatch)
    client = PushClient(config.endpoint, config.client_id, issued.secret, max_attempts=2,
                        session=Scripted(Answer(503), Answer(502)), sleep=lambda _s: None)
    with pytest.raises(RetryablePushError):
        runner.run_once(config, client)
    assert not config.checkpoint.exists()


def test_dry_run_reads_and_checks_and_sends_nothing(
        tmp_path: Path, tenant_id: str, issued: IssuedSecret, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    source_url = f"sqlite:///{tmp_path / 'c2crm.db'}"
    agent_db.build(source_url, 10, seed=1)
    config = write_config(tmp_path, tenant_id, issued, source_url, monkeypatch)
    monkeypatch.setattr(requests.Session, "post", lambda *a, **k: pytest.fail("sent"))
    assert cli.main(["run", "--config", str(config.path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "opportunity: would push 10 change(s)" in out and '"object": "opportunity"' in out
    assert not config.checkpoint.exists()


def test_429_5xx_and_connection_errors_are_retried_with_retry_after() -> None:
    waits: list[float] = []
    session = Scripted(Answer(429, {"error": "rate_limited"}, {"Retry-After": "7"}),
                       Answer(503), requests.ConnectionError("refused"),
                       Answer(202, {"receipt_id": 9}))
    client = PushClient("http://x/v1/push/t/records", "pc_1", "whsec_" + "B" * 43 + "=",
                        session=session, sleep=waits.append)
    ack = client.push("agent_1", [{"object": "account", "id": "1", "action": "delete"}])
    assert ack.receipt_id == 9 and ack.attempts == 4 and not ack.replay
    assert waits[0] == 7 and len(waits) == 3 and all(w <= 120 for w in waits)
    assert {h["webhook-id"] for h in session.sent} == {"agent_1"}  # one id for every attempt


def test_400_and_401_stop_with_the_servers_words(
        app: Flask, engine: Engine, tenant_id: str, issued: IssuedSecret, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    client = PushClient(f"http://concierge.test/v1/push/{tenant_id}/records",
                        issued.client_id, issued.secret, session=FlaskSession(app.test_client()))
    with pytest.raises(PushRefused) as refused:
        client.push("agent_bad", [{"object": "account", "id": "A1", "action": "remove",
                                   "data": {}}])
    assert refused.value.status == 400
    assert "record 0 (id A1): unknown action 'remove'" in str(refused.value)
    wrong = PushClient(client.endpoint, issued.client_id, "whsec_" + "C" * 43 + "=",
                       session=FlaskSession(app.test_client()))
    with pytest.raises(PushRefused) as unauthorized:
        wrong.push("agent_1", [{"object": "account", "id": "A1", "action": "delete"}])
    assert unauthorized.value.status == 401 and "secret" in str(unauthorized.value)
    assert inbox_rows(engine, tenant_id) == []
    # Through the command: exit 1 and the message, for a 401 from a real answer.
    source_url = f"sqlite:///{tmp_path / 'c2crm.db'}"
    agent_db.build(source_url, 10, seed=1)
    config = write_config(tmp_path, tenant_id, issued, source_url, monkeypatch)
    monkeypatch.setenv(SECRET_ENV, "whsec_" + "D" * 43 + "=")
    session = FlaskSession(app.test_client())
    monkeypatch.setattr(requests.Session, "post",
                        lambda _self, url, **kwargs: session.post(url, **kwargs))
    assert cli.main(["run", "--config", str(config.path)]) == 1
    assert "HTTP 401" in capsys.readouterr().err
    assert not config.checkpoint.exists()


def test_check_probes_the_credentials_without_storing_anything(
        app: Flask, engine: Engine, tenant_id: str, issued: IssuedSecret, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    source_url = f"sqlite:///{tmp_path / 'c2crm.db'}"
    agent_db.build(source_url, 10, seed=1)
    config = write_config(tmp_path, tenant_id, issued, source_url, monkeypatch)
    session = FlaskSession(app.test_client())
    monkeypatch.setattr(requests.Session, "post",
                        lambda _self, url, **kwargs: session.post(url, **kwargs))
    assert cli.main(["check", "--config", str(config.path)]) == 0
    assert "credentials accepted" in capsys.readouterr().out
    monkeypatch.setenv(SECRET_ENV, "whsec_" + "E" * 43 + "=")
    assert cli.main(["check", "--config", str(config.path)]) == 1
    assert "HTTP 401" in capsys.readouterr().err
    assert inbox_rows(engine, tenant_id) == [] and not config.checkpoint.exists()


def test_the_secret_never_shows_in_logs_output_or_process_arguments(
        tmp_path: Path, tenant_id: str, issued: IssuedSecret, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    source_url = f"sqlite:///{tmp_path / 'c2crm.db'}"
    agent_db.build(source_url, 10, seed=1)
    config = write_config(tmp_path, tenant_id, issued, source_url, monkeypatch)
    caplog.set_level(logging.DEBUG)
    client = runner.make_client(config)
    client.session = Scripted(Answer(503), *[Answer(202, {"receipt_id": i}) for i in range(20)])
    client.sleep = lambda _s: None
    runner.run_once(config, client)
    captured = capsys.readouterr()
    assert "retrying" in caplog.text
    for text in (caplog.text, captured.out, captured.err, repr(client),
                 config.checkpoint.read_text()):
        assert issued.secret not in text
    # A running agent: its command line holds no secret (it is read from the environment).
    env = {**os.environ, SECRET_ENV: issued.secret, SOURCE_ENV: source_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "accrue.agent.cli", "run", "--config", str(config.path),
         "--every", "5"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
        assert issued.secret not in cmdline and "--config" in cmdline
    finally:
        process.kill()
        out, err = process.communicate()
    assert issued.secret not in out + err


def test_the_agent_imports_neither_dagster_nor_the_web_app() -> None:
    code = ("import sys, accrue.agent.cli; "
            "print(sorted(m for m in ('dagster', 'flask', 'onboarding_app', 'pandas', "
            "'accrue_pipelines') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_the_comparison_is_not_vacuous(
        app: Flask, engine: Engine, tenant_id: str, issued: IssuedSecret, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    source_url = f"sqlite:///{tmp_path / 'c2crm.db'}"
    source = agent_db.build(source_url, 10, seed=2)
    config = write_config(tmp_path, tenant_id, issued, source_url, monkeypatch)
    runner.run_once(config, flask_client(config, app))
    assert_equal(engine, tenant_id, source)
    with source.begin() as conn:  # behind the agent's back: no changed_on, no push
        conn.execute(agent_db.DEALS.update().where(agent_db.DEALS.c.deal_no == "DL-000001")
                     .values(title="Changed quietly"))
        conn.execute(agent_db.PEOPLE.delete().where(agent_db.PEOPLE.c.person_no == "PE-000001"))
        conn.execute(agent_db.COMPANIES.insert().values(company_no="CO-NEW", company_name="N",
                                                        changed_on=datetime(2000, 1, 1)))
    kinds = {(m.kind, m.source_id) for m in compare_with_source(
        Warehouse(engine), tenant_id, source).mismatches}
    assert kinds == {("fields_live", "DL-000001"), ("extra_live", "PE-000001"),
                     ("missing_live", "CO-NEW")}


def test_a_short_chaos_run_with_sigkills_leaves_the_warehouse_equal_to_the_source() -> None:
    try:
        redis.Redis.from_url(chaos_push.DEFAULT_REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError:
        pytest.skip("needs Redis (the push API counts its rate limit there in production)")
    args = chaos_push.parse_args(["--backends", "sqlite", "--trials", "1", "--trial-seconds",
                                  "6", "--opportunities", "30", "--batch", "10"])
    [result] = chaos_push.run(args)
    assert sum(result.kills.values()) >= 1 and result.mutations > 0 and result.rows > 30
    assert result.mismatches == [] and result.quarantined == 0


def test_the_demo_tenant_is_prepared_once_and_its_agent_feeds_the_warehouse(
        app: Flask, engine: Engine, tmp_path: Path) -> None:
    from accrue import erasure, tenants
    from accrue_cli import demo_push

    if tenants.get_tenant(engine, demo_push.TENANT_ID) is not None:  # shared session database
        erasure.erase_synced_data(engine, demo_push.TENANT_ID)
    push = demo_push.PushDemo(tmp_path / "home", 0.02)
    said = push.prepare(engine, "http://concierge.test")
    assert demo_push.TENANT_ID in said and "accrue-agent" in said
    secret = push.folder / "push.secret"
    assert secret.stat().st_mode & 0o077 == 0
    first = (secret.read_text(), push.database.stat().st_mtime)
    push.prepare(engine, "http://concierge.test")  # a second start: nothing issued or rebuilt
    assert (secret.read_text(), push.database.stat().st_mtime) == first
    assert push.agent_args()[-2:] == ["--every", str(demo_push.PUSH_EVERY_SECONDS)]
    config = mapping.load(push.config)
    summary = runner.run_once(config, flask_client(config, app))
    assert summary.of("opportunity").changes >= demo_push.MIN_OPPORTUNITIES
    lines: list[str] = []
    process_inbox(engine, demo_push.TENANT_ID)
    push.poll(engine, lines.append, "1 s")
    assert lines and lines[0].startswith(f"{demo_push.TENANT_ID}: first data in after 1 s")
    assert push.missing() == [f"{demo_push.TENANT_ID} has no recommendations yet"]
