"""Push API under gunicorn on PostgreSQL: records/s accepted, acknowledge latency, and
zero loss or duplicates while the server is SIGKILLed (issue 13, F8).

The concierge is served as in production (`accrue app`: gunicorn, production settings,
rate limits counted in Redis; the push limit raised with ACCRUE_PUSH_RATE_LIMIT so it
measures the server, not the limit) against a scratch PostgreSQL database. Client
processes (benchmarks.push_bench_client; separate processes so the senders do not share
the server's interpreter, and their CPU is measured and printed) send signed batches:

* paced rounds: batches leave on a schedule at `--rate` records/s (the target, 3,000)
  whatever the answers, so latency is measured from the scheduled send (a slow answer
  delays nothing else and is not hidden);
* saturation rounds: each client sends its next batch once the previous is acknowledged:
  the most the server accepts, and the latency at that load;
* the SIGKILL round: saturation load while the gunicorn master and workers are SIGKILLed
  `--kills` times, each 2-3 s after the restarted server answers; clients retry every
  unacknowledged batch with the same webhook-id, and every sent record is then looked for
  in the inbox: each must be there exactly once, and every acknowledged batch too.

Every round's records are counted and compared with the inbox the same way. Figures are
medians of `--rounds` rounds, printed beside the targets (3,000 records/s, p99 < 250 ms),
a bare INSERT of the same bodies (one per transaction, one connection: the database's own
pace), the CPU of server, clients, PostgreSQL and everything else, and the load average.

    python -m benchmarks.push_bench [--rounds 3 --seconds 15 --clients 8 --workers 2 ...]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from standardwebhooks.webhooks import Webhook

from accrue import crypto, tenants
from accrue.db import make_engine, upgrade
from accrue.push import PUSH_CRM_TYPE, credentials, inbox
from accrue.schema import push_inbox
from benchmarks.push_bench_client import ClientSpec, batch_body, record_id, webhook_id
from benchmarks.push_bench_report import (
    TARGET_RECORDS_PER_SECOND,
    percentile,
    report,
    summary,
)
from benchmarks.push_bench_server import (
    BenchSkipped,
    CpuMeter,
    Gunicorn,
    check_redis,
    server_env,
)
from benchmarks.support.databases import (
    BENCH_POSTGRES_ENV,
    default_postgres_url,
    postgres_backend,
)
from benchmarks.support.measure import log, machine_info, write_results
from benchmarks.support.processes import REPO_ROOT, BenchError, free_port

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REFERENCE_TABLE = "push_bench_reference"


# ============================================================ one round


@dataclass(frozen=True)
class Load:
    label: str
    clients: int
    batch_size: int
    seconds: float
    rate: float = 0.0  # records/s offered on a schedule; 0: closed loop
    kills: int = 0


def push_tenant(engine: Engine, tenant_id: str, keyring: crypto.Keyring) -> tuple[str, str]:
    tenants.add_tenant(engine, tenant_id, f"Push bench {tenant_id}", PUSH_CRM_TYPE)
    issued = credentials.issue_secret(engine, tenant_id, keyring=keyring)
    return issued.client_id, issued.secret


def _client_specs(load: Load, server: Gunicorn, tenant_id: str, client_id: str,
                  secret: str) -> list[ClientSpec]:
    interval = load.clients * load.batch_size / load.rate if load.rate else 0.0
    return [ClientSpec(host="127.0.0.1", port=server.port, tenant=tenant_id,
                       client_id=client_id, secret=secret, client=c,
                       batch_size=load.batch_size, seconds=load.seconds, interval=interval,
                       offset=c * interval / load.clients)
            for c in range(load.clients)]


def _run_clients(specs: Sequence[ClientSpec], during: Any = None) -> list[dict[str, Any]]:
    """Start the client processes, release them together; with `during`, run it meanwhile
    and stop the clients when it returns."""
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks.push_bench_client"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO_ROOT,
                              text=True) for _ in specs]
    try:
        for proc, spec in zip(procs, specs, strict=True):
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(json.dumps(asdict(spec)) + "\n")
            proc.stdin.flush()
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise BenchError("a push client did not start")
        start = time.time() + 0.2
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{start}\n")
            proc.stdin.flush()
        if during is not None:
            during(start)
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("stop\n")
                proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0 or not out.strip():
                raise BenchError(f"a push client failed (exit {proc.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def _killer(server: Gunicorn, kills: int, rng: random.Random, done: list[int]) -> Any:
    """Kill the server `kills` times, each 2-3 s after it answers again, restart it, and
    return 2 s after the last restart answers (the load goes on until then)."""
    def run(start: float) -> None:
        time.sleep(max(0.0, start - time.time()))
        for _ in range(kills):
            time.sleep(rng.uniform(2.0, 3.0))
            server.kill()
            done.append(1)
            server.start()
            server.wait_ready()
        time.sleep(2.0)
    return run


def verify(engine: Engine, tenant_id: str, results: Sequence[dict[str, Any]],
           batch_size: int) -> dict[str, int]:
    """Every record sent against the inbox: each exactly once, every acknowledged batch."""
    expected: set[str] = set()
    acknowledged: set[str] = set()
    unacknowledged = 0
    for result in results:
        for batch in result["batches"]:
            expected.update(record_id(tenant_id, result["client"], batch["batch"], i)
                            for i in range(batch_size))
            if batch["status"]:
                acknowledged.add(webhook_id(tenant_id, result["client"], batch["batch"]))
            else:
                unacknowledged += 1
    stored: Counter[str] = Counter()
    webhooks: Counter[str] = Counter()
    with engine.connect() as conn:
        for hook, body in conn.execute(sa.select(push_inbox.c.webhook_id, push_inbox.c.body)
                                       .where(push_inbox.c.tenant_id == tenant_id)):
            webhooks[hook] += 1
            stored.update(str(r["id"]) for r in json.loads(body)["records"])
    return {
        "sent_records": len(expected), "sent_batches": sum(len(r["batches"]) for r in results),
        "stored_records": sum(stored.values()), "inbox_rows": sum(webhooks.values()),
        "missing": len(expected - stored.keys()),
        "duplicated": sum(n - 1 for n in stored.values() if n > 1),
        "unexpected": len(stored.keys() - expected),
        "acknowledged_not_stored": len(acknowledged - webhooks.keys()),
        "unacknowledged_batches": unacknowledged,
    }


def run_load(load: Load, server: Gunicorn, engine: Engine, keyring: crypto.Keyring,
             tenant_id: str, seed: int = 7) -> dict[str, Any]:
    client_id, secret = push_tenant(engine, tenant_id, keyring)
    specs = _client_specs(load, server, tenant_id, client_id, secret)
    kills: list[int] = []
    during = _killer(server, load.kills, random.Random(seed), kills) if load.kills else None
    meter = CpuMeter(server, engine)
    meter.start()
    results = _run_clients(specs, during)
    clients_cpu = sum(r["cpu_seconds"] for r in results)
    cpu = meter.stop(clients_cpu)
    batches = [b for r in results for b in r["batches"]]
    acked = [b for b in batches if b["status"]]
    span = (max(b["acked"] for b in acked) - min(b["sent"] for b in acked)) if acked else 0.0
    latencies = [b["latency"] * 1000 for b in acked]
    failures: Counter[str] = Counter()
    for r in results:
        failures.update(r["failures"])
    return {
        "label": load.label, "tenant": tenant_id, "clients": load.clients,
        "offered_rate": load.rate, "seconds": span,
        "records_per_second": len(acked) * load.batch_size / span if span else 0.0,
        "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
        "p99_ms": percentile(latencies, 99), "max_ms": max(latencies, default=float("nan")),
        "latencies_ms": latencies,
        "replays_acknowledged": sum(1 for b in acked if b["status"] == 200),
        "retries": dict(failures), "kills": len(kills), "cpu": cpu,
        "check": verify(engine, tenant_id, results, load.batch_size),
    }


# ============================================================ the database's own pace


def reference(engine: Engine, bodies: Sequence[bytes], secret: str) -> dict[str, float]:
    """A bare INSERT of the same bodies into a table shaped like the inbox (one per
    transaction, one connection, no HTTP), and the in-process cost of the app's checks."""
    with engine.begin() as conn:  # the inbox's columns, defaults and indexes; no foreign key
        conn.execute(sa.text(f"CREATE TABLE {REFERENCE_TABLE} (LIKE push_inbox INCLUDING ALL)"))
    table = sa.Table(REFERENCE_TABLE, sa.MetaData(), autoload_with=engine)
    records = len(json.loads(bodies[0])["records"])
    try:
        began = time.perf_counter()
        for n, body in enumerate(bodies):
            with engine.begin() as conn:
                conn.execute(table.insert().values(
                    tenant_id="reference", webhook_id=f"ref-{n}", received_at=datetime.now(UTC),
                    headers={}, body=body.decode(), record_count=records))
        insert_seconds = time.perf_counter() - began
    finally:
        table.drop(engine)
    hook = Webhook(secret)
    now = datetime.now(UTC)
    began = time.perf_counter()
    for body in bodies:
        headers = {"webhook-id": "msg_ref", "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": hook.sign("msg_ref", now, body.decode())}
        hook.verify(body, headers, json_parse=False)
    verify_seconds = time.perf_counter() - began
    began = time.perf_counter()
    for body in bodies:
        inbox.parse_batch(body)
    parse_seconds = time.perf_counter() - began
    return {"records_per_second": len(bodies) * records / insert_seconds,
            "insert_ms": 1000 * insert_seconds / len(bodies),
            "sign_verify_ms": 1000 * verify_seconds / len(bodies),
            "parse_validate_ms": 1000 * parse_seconds / len(bodies),
            "body_kb": sum(map(len, bodies)) / len(bodies) / 1024}


# ============================================================ orchestration


def loads(args: argparse.Namespace) -> list[Load]:
    every = [Load(f"paced {n + 1}", args.clients, args.batch, args.seconds, rate=args.rate)
             for n in range(args.rounds)]
    every += [Load(f"saturation {n + 1}", args.clients, args.batch, args.seconds)
              for n in range(args.rounds)]
    if args.kills:
        # The load lasts until the last kill's restart has served 2 s (at most an hour).
        every.append(Load("sigkill", args.clients, args.batch, 3600.0,
                          kills=args.kills))
    return every


def run(args: argparse.Namespace) -> dict[str, Any]:
    backend, pg, message = postgres_backend(args.postgres_url)
    if backend is None or pg is None:
        raise BenchSkipped(f"{message}: the push benchmark needs PostgreSQL "
                           "(--postgres-url)")
    check_redis(args.redis_url)
    keys = crypto.generate_key()
    keyring = crypto.Keyring.parse(keys)
    tag = secrets.token_hex(3)
    rounds: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="accrue-push-bench-") as scratch:
        url = pg.create()
        engine = make_engine(url)
        server = Gunicorn(free_port(), server_env(url, args.redis_url, keys, Path(scratch)),
                          args.workers, args.threads, Path(scratch) / "gunicorn.log")
        try:
            upgrade(engine)
            server.start()
            server.wait_ready()
            log(f"gunicorn: {args.workers} workers x {args.threads} threads on port "
                 f"{server.port}; {message}")
            if args.warmup:
                run_load(Load("warm-up", args.clients, args.batch, args.warmup), server,
                         engine, keyring, f"pb-{tag}-warmup")
            for n, load in enumerate(loads(args)):
                length = f"{load.kills} kills" if load.kills else f"{load.seconds:.0f} s"
                log(f"== {load.label}: {load.clients} clients, {length}, load average "
                     f"{os.getloadavg()[0]:.2f} ==")
                result = run_load(load, server, engine, keyring, f"pb-{tag}-{n}", seed=n)
                log(f"   {result['records_per_second']:,.0f} records/s, p99 "
                     f"{result['p99_ms']:.0f} ms, check {result['check']}")
                rounds.append(result)
            bodies = [batch_body(ClientSpec("", 0, "ref", "", "", 0, args.batch, 0), n)
                      for n in range(args.reference_batches)]
            ref = reference(engine, bodies, "whsec_" + "B" * 43 + "=")
        finally:
            server.stop()
            engine.dispose()
            pg.drop_all()
    return {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(), "postgres": message, "workers": args.workers,
            "threads": args.threads, "clients": args.clients, "batch": args.batch,
            "rate": args.rate, "rounds": rounds, "reference": ref,
            "load_before": load_before, "load_after": os.getloadavg()}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.push_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="paced and saturation rounds "
                        "each; figures are medians (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=30.0, help="load per round (30 s "
                        "paced: 180 batches, so a round's p99 is not just its slowest)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured load first")
    parser.add_argument("--clients", type=int, default=8, help="client processes")
    parser.add_argument("--batch", type=int, default=500, help="records per batch")
    parser.add_argument("--rate", type=float, default=TARGET_RECORDS_PER_SECOND,
                        help="records/s offered in paced rounds (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers: one per "
                        "core, so both cores run Python")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker: while one "
                        "request waits on PostgreSQL (commit, lock) another parses")
    parser.add_argument("--kills", type=int, default=6, help="SIGKILLs in the crash round "
                        "(0: none)")
    parser.add_argument("--reference-batches", type=int, default=100)
    parser.add_argument("--postgres-url", default=default_postgres_url(BENCH_POSTGRES_ENV))
    parser.add_argument("--redis-url", default=os.environ.get("ACCRUE_RATELIMIT_STORAGE_URI",
                                                              DEFAULT_REDIS_URL))
    parser.add_argument("--output", type=Path, default=None,
                        help="results JSON (default <ACCRUE_HOME>/bench/push.json)")
    args = parser.parse_args(argv)
    if min(args.rounds, args.clients, args.batch, args.workers, args.threads) < 1:
        parser.error("--rounds, --clients, --batch, --workers and --threads must be >= 1")
    if args.batch > inbox.MAX_RECORDS:
        parser.error(f"--batch is at most {inbox.MAX_RECORDS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        results = run(args)
    except BenchSkipped as exc:
        print(f"push benchmark skipped: {exc}")
        return 0
    except BenchError as exc:
        log(f"benchmark failed: {exc}")
        return 1
    results["summary"] = summary(results)
    output = write_results(results, args.output, "push.json")
    print(report(results))
    log(f"results written to {output}")
    return 1 if results["summary"]["check_failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
