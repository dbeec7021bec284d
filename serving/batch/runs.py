"""A batch as the executor holds it while it runs, and the executor's settings."""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass, field

from policies import Workload
from serving.batch.records import CANCELLED, EXPIRED, BatchRecord
from serving.batch.storage import BatchStorage

#: ending -> (error code, message) given to the lines that never ran
ENDINGS = {CANCELLED: ("batch_cancelled", "the batch was cancelled before this request ran"),
           EXPIRED: ("batch_expired", "the batch's completion window ended before this request ran")}


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    """How the executor shares replicas and how often it writes.

    ``replica_batch_slots``: batch lines in flight on one replica at most;
    ``replica_slots``: no batch line starts on a replica with this many
    requests (interactive and batch) in flight; ``line_attempts``: tries of a
    line whose replica did not answer; ``provision_retry_s``: wait after a
    batch replica could not be placed; ``provision_idle_s``: a batch replica
    no batch needs is released after this long; ``bulk_lines``: chat lines sent
    to a replica in one request at most (1, the default: one request per line, so each line's
    answer carries its own exact usage; see :mod:`serving.batch.bulk`).
    """

    replica_batch_slots: int = 64
    replica_slots: int = 256
    line_attempts: int = 3
    flush_lines: int = 256
    flush_interval_s: float = 0.05
    poll_interval_s: float = 0.5
    provision_retry_s: float = 30.0
    provision_idle_s: float = 120.0
    bulk_lines: int = 1

    def __post_init__(self) -> None:
        for name in ("replica_batch_slots", "replica_slots", "line_attempts", "flush_lines", "bulk_lines"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: got {value!r}, want an integer >= 1, "
                                 f"e.g. ExecutionSettings(replica_batch_slots=64)")
        for name in ("flush_interval_s", "poll_interval_s", "provision_retry_s",
                     "provision_idle_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name}: got {value!r}, want seconds > 0")


@dataclass(eq=False)
class Run:
    """An active batch as the executor holds it in memory."""

    record: BatchRecord
    workload: Workload | None = None
    queue: deque = field(default_factory=deque)  # (line, custom_id, body) ready to start
    cursor: int = 0  # highest line number read from the store
    exhausted: bool = False  # the store has no pending line after the cursor
    inflight: set[int] = field(default_factory=set)
    attempts: Counter = field(default_factory=Counter)
    replicas: set[str] = field(default_factory=set)  # replicas already in the ledger for it
    noting: dict[str, asyncio.Future] = field(default_factory=dict)
    busy: str | None = None  # "validating", "closing" or "finalizing" while a thread works
    closed: bool = False  # pending lines were given the ending's error
    waiting: str | None = None  # why no line can start, when none can
    failures: int = 0  # validate/close/finalize steps that failed in a row
    retry_at: float = 0.0  # time.monotonic() before which no step is retried
    alone: bool = False  # send every line alone (a replica refused a bulk request of this batch)

    @property
    def id(self) -> str:
        return self.record.id

    def next_line(self, store: BatchStorage, chunk: int) -> tuple[int, str, str] | None:
        if not self.queue and not self.exhausted:
            rows = store.pending_lines(self.id, after=self.cursor, limit=chunk)
            for row in rows:
                if row[0] not in self.inflight:
                    self.queue.append(row)
            if rows:
                self.cursor = rows[-1][0]
            else:
                self.exhausted = True
        return self.queue.popleft() if self.queue else None

    @property
    def drained(self) -> bool:
        return not self.inflight and not self.queue and (self.exhausted or self.closed)
