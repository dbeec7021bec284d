"""How loaded each replica is: what the gateway has in flight there, and what vLLM says.

Two sources, kept per replica id in one :class:`LoadBoard`:

- the gateway's own count of requests and estimated tokens in flight to each
  replica (exact for this gateway, blind to other senders);
- the engine's view, read from the replica's Prometheus ``/metrics`` by a
  :class:`MetricsPoller` every ``poll_s`` (short: half a second by default):
  ``vllm:num_requests_waiting``, ``vllm:num_requests_running`` and
  ``vllm:kv_cache_usage_perc`` (0–1), plus the prefix-cache counters
  ``vllm:prefix_cache_queries_total`` / ``vllm:prefix_cache_hits_total`` for
  reports. A reading older than ``stale_s`` counts as unknown.

A reading is up to a poll old, and a router that trusts it sends every request
to the replica that looked idle half a second ago. So what this gateway sent and
got back since the reading is added to it: the engine's count, corrected by the
gateway's own traffic since (:meth:`LoadBoard.queued`, :meth:`LoadBoard.load`).

A replica whose ``/metrics`` does not answer (a server started with
``--disable-log-stats`` publishes no engine gauges; a stub has no such route)
is polled again only every ``retry_s``; scorers then fall back to the
gateway's own counts.

What a gateway holds for the replicas, summed over a site's gateway processes, is the
autoscaler's signal: a :class:`GatewayLoad`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

_WANTED = {
    "vllm:num_requests_waiting": "waiting",
    "vllm:num_requests_running": "running",
    "vllm:kv_cache_usage_perc": "kv_usage",
    "vllm:prefix_cache_queries_total": "prefix_queries",
    "vllm:prefix_cache_hits_total": "prefix_hits",
}
_PREFIXES = tuple(_WANTED)


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """One reading of a replica's engine gauges (sums over its engines)."""

    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float = 0.0  # fraction of KV cache blocks in use, 0–1
    prefix_queries: float = 0.0  # tokens looked up in the prefix cache, since start
    prefix_hits: float = 0.0  # of which found
    read_at: float = 0.0


def parse_vllm_metrics(text: str, read_at: float = 0.0) -> EngineLoad | None:
    """The engine gauges in a Prometheus text exposition; None when it has none of them.

    >>> page = ('# HELP vllm:num_requests_waiting ...\\n'
    ...         'vllm:num_requests_waiting{engine="0",model_name="m"} 3.0\\n'
    ...         'vllm:num_requests_running{engine="0",model_name="m"} 5.0\\n'
    ...         'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\\n')
    >>> load = parse_vllm_metrics(page)
    >>> (load.waiting, load.running, load.kv_usage)
    (3.0, 5.0, 0.25)
    >>> parse_vllm_metrics("python_gc_objects_collected_total 1.0") is None
    True
    >>> parse_vllm_metrics('vllm:kv_cache_usage_perc{engine="0"} NaN') is None
    True
    """
    values: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(_PREFIXES):
            continue
        name_end = line.find("{")
        if name_end < 0:
            name_end = line.find(" ")
        field = _WANTED.get(line[:name_end])
        if field is None:
            continue
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        if not math.isfinite(value):  # the exposition format allows NaN and ±Inf; a score may not
            continue
        values[field] = values.get(field, 0.0) + value
    if not values:
        return None
    return EngineLoad(read_at=read_at, **values)


@dataclass(frozen=True)
class GatewayLoad:
    """Requests gateways hold: in flight per replica id (sent, not answered) and queued per model
    (waiting in the admission queue for a slot). ``complete`` is False when some gateway process
    of the site could not be heard from, so the counts are a lower bound.

    >>> total = GatewayLoad.total([GatewayLoad({"r1": 2}, {"m": 1}), GatewayLoad({"r1": 1, "r2": 4})])
    >>> total.outstanding, total.queued
    ({'r1': 3, 'r2': 4}, {'m': 1})
    """

    outstanding: Mapping[str, int] = field(default_factory=dict)
    queued: Mapping[str, int] = field(default_factory=dict)
    complete: bool = True

    @staticmethod
    def total(loads: Iterable[GatewayLoad]) -> GatewayLoad:
        """The sum of ``loads``, complete when every one is."""
        outstanding: dict[str, int] = {}
        queued: dict[str, int] = {}
        complete = True
        for load in loads:
            for replica_id, count in load.outstanding.items():
                outstanding[replica_id] = outstanding.get(replica_id, 0) + count
            for model, count in load.queued.items():
                queued[model] = queued.get(model, 0) + count
            complete = complete and load.complete
        return GatewayLoad(outstanding, queued, complete)

    def to_json(self) -> dict[str, dict[str, int]]:
        """The counts, without zeros: ``{"outstanding": {replica id: n}, "queued": {model: n}}``."""
        return {"outstanding": {k: v for k, v in self.outstanding.items() if v},
                "queued": {k: v for k, v in self.queued.items() if v}}

    @classmethod
    def from_json(cls, body: Mapping[str, Mapping[str, int]]) -> GatewayLoad:
        return cls({k: int(v) for k, v in body.get("outstanding", {}).items()},
                   {k: int(v) for k, v in body.get("queued", {}).items()})


class LoadBoard:
    """Per replica: requests and estimated tokens in flight from this gateway, and the latest
    engine reading. Lives in the gateway's event loop (no locks)."""

    def __init__(self, *, stale_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_s = stale_s
        self.clock = clock
        self.outstanding: dict[str, int] = {}
        self.tokens: dict[str, int] = {}
        self.engines: dict[str, EngineLoad] = {}
        self._outstanding_at_read: dict[str, int] = {}

    def record(self, replica_id: str, reading: EngineLoad) -> None:
        """Keep a new engine reading, and this gateway's in-flight count at that moment."""
        self.engines[replica_id] = reading
        self._outstanding_at_read[replica_id] = self.outstanding.get(replica_id, 0)

    def _since_read(self, replica_id: str) -> int:
        return self.outstanding.get(replica_id, 0) - self._outstanding_at_read.get(replica_id, 0)

    def engine(self, replica_id: str) -> EngineLoad | None:
        """The replica's engine reading if it is recent enough, else None."""
        reading = self.engines.get(replica_id)
        if reading is None or self.clock() - reading.read_at > self.stale_s:
            return None
        return reading

    def load(self, replica_id: str) -> float:
        """Requests the replica holds now: the engine's waiting plus running, corrected by what
        this gateway sent and got back since the reading (never less than this gateway's own
        in flight); without a reading, this gateway's in flight.

        >>> board = LoadBoard(clock=lambda: 0.0)
        >>> board.record("r", EngineLoad(waiting=2.0, running=3.0))
        >>> board.sent("r", 0); board.sent("r", 0)
        >>> board.load("r"), board.queued("r")
        (7.0, 4.0)
        """
        mine = self.outstanding.get(replica_id, 0)
        reading = self.engine(replica_id)
        if reading is None:
            return float(mine)
        return max(float(mine), reading.waiting + reading.running + self._since_read(replica_id))

    def queued(self, replica_id: str) -> float:
        """Requests waiting in the replica's engine now (estimated as :meth:`load` is); without a
        reading, this gateway's in flight there."""
        reading = self.engine(replica_id)
        if reading is None:
            return float(self.outstanding.get(replica_id, 0))
        return max(0.0, reading.waiting + self._since_read(replica_id))

    def sent(self, replica_id: str, tokens: int) -> None:
        self.outstanding[replica_id] = self.outstanding.get(replica_id, 0) + 1
        if tokens:
            self.tokens[replica_id] = self.tokens.get(replica_id, 0) + tokens

    def done(self, replica_id: str, tokens: int) -> None:
        self.outstanding[replica_id] = max(0, self.outstanding.get(replica_id, 1) - 1)
        if tokens:
            self.tokens[replica_id] = max(0, self.tokens.get(replica_id, 0) - tokens)


class MetricsReader(Protocol):
    """What the poller needs of an HTTP client: GET a URL, return (status, body)."""

    async def get(self, url: str, timeout: float) -> tuple[int, bytes]: ...


class MetricsPoller:
    """Reads every live replica's ``/metrics`` every ``poll_s`` into a :class:`LoadBoard`.

    ``endpoints`` returns the live replicas as ``(replica_id, base_url)`` pairs;
    ``reader`` is the gateway's upstream pool. Run :meth:`run` as a task of the
    gateway's event loop; cancel it to stop.
    """

    def __init__(self, board: LoadBoard, endpoints: Callable[[], Sequence[tuple[str, str]]],
                 reader: MetricsReader, *, poll_s: float = 0.5, timeout_s: float = 1.0,
                 retry_s: float = 30.0) -> None:
        if poll_s <= 0:
            raise ValueError(f"metrics poll: got poll_s={poll_s}; want > 0, e.g. 0.5")
        self.board, self.endpoints, self.reader = board, endpoints, reader
        self.poll_s, self.timeout_s, self.retry_s = poll_s, timeout_s, retry_s
        self._quiet_until: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            started = self.board.clock()
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a bad poll must not end polling
                log.exception("polling replica metrics failed")
            await asyncio.sleep(max(0.0, self.poll_s - (self.board.clock() - started)))

    async def poll_once(self) -> None:
        """Read every live replica once, concurrently; forget replicas no longer live."""
        live = list(self.endpoints())
        ids = {replica_id for replica_id, _ in live}
        for gone in [r for r in self.board.engines if r not in ids]:
            del self.board.engines[gone]
        now = self.board.clock()
        due = [(r, url) for r, url in live if self._quiet_until.get(r, 0.0) <= now]
        if due:
            await asyncio.gather(*(self._read(r, url) for r, url in due))

    async def _read(self, replica_id: str, url: str) -> None:
        try:
            status, body = await self.reader.get(url + "/metrics", self.timeout_s)
        except Exception:  # noqa: BLE001 - unreachable now: the router's own backoff handles it
            self.board.engines.pop(replica_id, None)
            return
        reading = None
        if status == 200:
            reading = parse_vllm_metrics(body.decode("utf-8", "replace"), self.board.clock())
        if reading is None:
            self.board.engines.pop(replica_id, None)
            self._quiet_until[replica_id] = self.board.clock() + self.retry_s
            return
        self.board.record(replica_id, reading)
