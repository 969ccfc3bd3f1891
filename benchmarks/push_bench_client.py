"""One push sender of the push benchmark, in its own process (benchmarks.push_bench).

It sends signed batches as a real sender would: each batch has its own `webhook-id`, and
a batch that was not acknowledged (connection refused or reset, a 5xx, a 429) is sent
again, re-signed with a fresh timestamp but the SAME webhook-id and body, until it is
acknowledged (202, or 200 for a replay the server had already stored). It imports only
the standard library and `standardwebhooks`, so a client starts fast and stays light.

Record ids are `<tenant>-c<client>-<batch>-<i>`: the parent rebuilds every sent id from
the batch numbers a client reports, and compares them with the inbox.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from benchmarks.support.measure import cpu_seconds

STAGES = ("Prospecting", "Qualification", "Proposal", "Negotiation", "Closed Won")
RETRY_PAUSE_SECONDS = 0.05  # a refused connection while the server restarts: try again soon
ANSWER_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class ClientSpec:
    """What one client sends. `interval` > 0: its batches leave on a schedule (an open
    loop: batch k at start + offset + k * interval, whatever the answers); 0: each batch
    as soon as the previous one is acknowledged (a closed loop)."""

    host: str
    port: int
    tenant: str
    client_id: str
    secret: str
    client: int
    batch_size: int
    seconds: float
    interval: float = 0.0
    offset: float = 0.0
    give_up_seconds: float = 120.0  # stop retrying a batch this long after the load ended


def record_id(tenant: str, client: int, batch: int, index: int) -> str:
    return f"{tenant}-c{client}-{batch}-{index}"


def webhook_id(tenant: str, client: int, batch: int) -> str:
    return f"msg_{tenant}_c{client}_{batch}"


def batch_body(spec: ClientSpec, batch: int) -> bytes:
    """A batch of realistic opportunity updates (about 230 bytes a record)."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    records = []
    for i in range(spec.batch_size):
        n = batch * spec.batch_size + i
        records.append({
            "object": "opportunity", "action": "update",
            "id": record_id(spec.tenant, spec.client, batch, i),
            "occurred_at": now,
            "data": {"name": f"Renewal {n}", "account_id": f"A-{n % 997}",
                     "amount": round(1000 + (n * 37) % 90000 + 0.5, 2),
                     "stage": STAGES[n % len(STAGES)], "close_date": "2027-03-31",
                     "probability": float(n % 100), "owner_id": f"U-{n % 13}"},
        })
    return json.dumps({"records": records}).encode()


class Sender:
    """A keep-alive connection that posts a batch until it is acknowledged."""

    def __init__(self, spec: ClientSpec) -> None:
        self.spec = spec
        self.hook = Webhook(spec.secret)
        self.conn: http.client.HTTPConnection | None = None
        self.retries = 0
        self.failures: dict[str, int] = {}

    def _fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1
        self.retries += 1
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def post(self, message_id: str, body: bytes, deadline: float) -> int:
        """The acknowledging status (202 or 200), or 0 when `deadline` passed first."""
        path = f"/v1/push/{self.spec.tenant}/records"
        while time.time() < deadline:
            now = datetime.now(UTC)
            headers = {
                "Content-Type": "application/json", "Accrue-Client-Id": self.spec.client_id,
                "webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": self.hook.sign(message_id, now, body.decode()),
            }
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(
                        self.spec.host, self.spec.port, timeout=ANSWER_TIMEOUT_SECONDS)
                self.conn.request("POST", path, body=body, headers=headers)
                answer = self.conn.getresponse()
                answer.read()
            except (OSError, http.client.HTTPException) as exc:
                self._fail(type(exc).__name__)
                time.sleep(RETRY_PAUSE_SECONDS)
                continue
            if answer.status in (200, 202):
                return answer.status
            if answer.status == 429:
                self._fail("429")
                time.sleep(float(answer.getheader("Retry-After") or 1))
                continue
            if answer.status >= 500:
                self._fail(str(answer.status))
                time.sleep(RETRY_PAUSE_SECONDS)
                continue
            raise RuntimeError(f"batch {message_id} refused with {answer.status}: "
                               "the benchmark's batch or signature is wrong")
        return 0


def run_client(spec: ClientSpec, start: float,
               stop: threading.Event | None = None) -> dict[str, Any]:
    """Send until `start + seconds` (or `stop`), then finish (retry) what was sent; the
    batches sent, each with its first scheduled send, acknowledge time, status, retries."""
    sender = Sender(spec)
    end = start + spec.seconds
    stop = stop or threading.Event()
    cpu = cpu_seconds()
    batches: list[dict[str, Any]] = []
    batch = 0
    while True:
        due = start + spec.offset + batch * spec.interval if spec.interval else time.time()
        if due >= end or stop.is_set():
            break
        body = batch_body(spec, batch)
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        sent = due if spec.interval else time.time()
        retries_before = sender.retries
        status = sender.post(webhook_id(spec.tenant, spec.client, batch), body,
                             end + spec.give_up_seconds)
        acked = time.time()
        batches.append({"batch": batch, "sent": sent - start, "acked": acked - start,
                        "latency": acked - sent, "status": status,
                        "retries": sender.retries - retries_before})
        batch += 1
    return {"client": spec.client, "batches": batches, "cpu_seconds": cpu_seconds() - cpu,
            "failures": sender.failures}


def main() -> None:
    """Line protocol with the parent: read the spec (JSON), say `ready`, read the start
    time (Unix seconds), send until the spec's seconds pass or a `stop` line arrives, then
    print the result (JSON)."""
    spec = ClientSpec(**json.loads(sys.stdin.readline()))
    print("ready", flush=True)
    start = float(sys.stdin.readline())
    stop = threading.Event()

    def wait_for_stop() -> None:
        if sys.stdin.readline().strip() == "stop":  # not at the end of input
            stop.set()

    threading.Thread(target=wait_for_stop, daemon=True).start()
    print(json.dumps(run_client(spec, start, stop)), flush=True)


if __name__ == "__main__":
    main()
