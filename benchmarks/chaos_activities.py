"""The chaos mutator's activity writes: calls, e-mails and meetings logged on deals, to-dos
completed, meetings moved, activities deleted (`delete_record` picks them too).

Why: activity is read from two sObjects (Task, Event) under one checkpoint and one id
reconciliation; chaos checks that this holds under faults and kills like every object.
Mixed into `benchmarks.chaos_salesforce.SalesforceMutator`, whose `_write`, `_pick`,
`_sobject`, `_text`, `pools` and `rng` it uses.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

SOBJECTS = ("Task", "Event")


class ActivityMutations:
    rng: random.Random
    pools: dict[str, list[str]]
    _write: Callable[[str, Callable[[], Any]], Any]
    _pick: Callable[[str], str | None]
    _sobject: Callable[[str], Any]
    _text: Callable[[str], str]

    def _deal(self) -> str | None:
        return self._pick(self.rng.choice(["Opportunity:open", "Opportunity:closed"]))

    def log_activity(self) -> None:
        """A call or e-mail logged as done, an open to-do, or a meeting, on a deal."""
        deal = self._deal()
        if deal is None:
            return
        payload: dict[str, Any] = {"Subject": self._text("Chaos"), "WhatId": deal}
        contact = self._pick("Contact") if self.rng.random() < 0.3 else None
        if contact:
            payload["WhoId"] = contact
        if self.rng.random() < 0.3:
            start = datetime.now(UTC) + timedelta(hours=self.rng.randint(-500, 500))
            payload.update(StartDateTime=start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           DurationInMinutes=self.rng.choice([30, 60]), Type="Meeting")
            sobject = "Event"
        else:
            kind = self.rng.choice(["Call", "Email", "Task"])
            payload.update(TaskSubtype=kind, Status=self.rng.choice(["Completed", "Not Started"]))
            if kind == "Call":
                payload["CallDurationInSeconds"] = self.rng.randint(30, 3600)
            sobject = "Task"
        created = self._write(f"create_{sobject.lower()}",
                              lambda: self._sobject(sobject).create(payload))
        if created:
            self.pools.setdefault(sobject, []).append(created["id"])

    def update_activity(self) -> None:
        """A to-do completed or reopened, or a meeting moved (its end follows)."""
        sobject = self.rng.choice(SOBJECTS)
        record_id = self._pick(sobject)
        if record_id is None:
            return
        if sobject == "Task":
            payload: dict[str, Any] = {"Status": self.rng.choice(["Completed", "In Progress"])}
        else:
            start = datetime.now(UTC) + timedelta(hours=self.rng.randint(-500, 500))
            payload = {"StartDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ")}
        self._write(f"update_{sobject.lower()}",
                    lambda: self._sobject(sobject).update(record_id, payload))
