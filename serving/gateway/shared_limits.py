"""Per-tenant limits that hold across a site's gateway processes: token buckets in PostgreSQL,
leased to each process in slices.

One row per tenant and kind (``requests``: :class:`~serving.gateway.limits.RateLimiter`;
``tokens``: :class:`~serving.gateway.token_quota.TokenQuota`) in ``rate_buckets`` is the
tenant's bucket: ``capacity`` a minute's worth, refilled at ``rate`` per second by the
database's clock (one clock for every machine). A process does not ask the database for every
request. It takes a *slice* of the bucket — about ``lease_s`` seconds of refill, at least one
unit — in one ``UPDATE`` that refills the bucket, adds back what the process returns, and
grants no more than the bucket holds; then it admits locally from that slice. A slice is
given back (what is left of it) at the process's next exchange once ``lease_s`` has passed,
so an idle process does not sit on a tenant's capacity. Every admitted request was granted
by the shared bucket, so the processes together never admit more than the tenant's limit; the
database is touched a few times per second per busy tenant and process, not per request. A
refusal is remembered for the seconds it names (at most ``lease_s``), so a throttled tenant
does not turn every request into a query either. The price: a request may be refused while
another process still holds an unused slice (at most ``lease_s`` of refill).

Token quotas may go into debt (what an answer costs is known only once it is in): a process
charges its local slice, and when that goes below zero it pushes the debt to the shared
bucket at once, so every process refuses the tenant until the bucket is positive again.

When the database cannot be reached, an exchange raises
:class:`~scheduler.database.DatabaseUnavailable` and, for ``retry_s``, so does every further
one without waiting on the database again; the gateway answers 503 with ``Retry-After``. Not
admitting is the honest answer: the same database holds the ledger, so the gateway could not
record the request anyway, and admitting without the shared bucket would let N processes
admit N times the limit. A process still spends what is left of a slice it holds (at most
``lease_s`` of refill).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scheduler.database import DatabaseUnavailable
from scheduler.database_sessions import FailFast, open_store_pool, transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_buckets (
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    capacity DOUBLE PRECISION NOT NULL,
    rate DOUBLE PRECISION NOT NULL,
    tokens DOUBLE PRECISION NOT NULL,
    updated DOUBLE PRECISION NOT NULL,
    granted DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, kind)
)
"""
_NOW = "extract(epoch from statement_timestamp())"
_CREATE = (f"INSERT INTO rate_buckets (tenant, kind, capacity, rate, tokens, updated) "
           f"VALUES (%(tenant)s, %(kind)s, %(capacity)s, %(rate)s, %(capacity)s, {_NOW}) "
           f"ON CONFLICT (tenant, kind) DO NOTHING")
# SET expressions read only the row itself, so under a concurrent update PostgreSQL evaluates
# them again on the newest version of the row: two exchanges never grant the same tokens.
_REFILLED = (f"CASE WHEN capacity = %(capacity)s AND rate = %(rate)s "
             f"THEN LEAST(capacity, tokens + GREATEST(0, {_NOW} - updated) * rate) "
             f"ELSE %(capacity)s END")  # a changed quota starts a full bucket
_AVAILABLE = f"LEAST(%(capacity)s, {_REFILLED} + %(returned)s)"
_GRANT = {True: f"LEAST(%(wanted)s, GREATEST(0, floor({_AVAILABLE})))",
          False: f"LEAST(%(wanted)s, GREATEST(0, {_AVAILABLE}))"}
_EXCHANGE = {whole: (f"UPDATE rate_buckets SET tokens = {_AVAILABLE} - {grant}, granted = {grant}, "
                     f"capacity = %(capacity)s, rate = %(rate)s, updated = GREATEST(updated, {_NOW}) "
                     f"WHERE tenant = %(tenant)s AND kind = %(kind)s RETURNING granted, tokens")
             for whole, grant in _GRANT.items()}


@dataclass(slots=True)
class _Slice:
    """What this process holds of one tenant's bucket."""

    capacity: float
    rate: float
    balance: float = 0.0
    taken_at: float = float("-inf")
    refused_until: float = float("-inf")


class SharedBuckets:
    """Every tenant's buckets in the PostgreSQL database at ``url`` (see the module docstring).

    Called from the gateway's event loop; an exchange blocks it for one round trip (bounded by
    ``timeout`` when the database is away), a few times per second per busy tenant.
    """

    def __init__(self, url: str, *, lease_s: float = 0.25, retry_s: float = 2.0, timeout: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if lease_s <= 0 or retry_s <= 0:
            raise ValueError(f"lease_s and retry_s: got {lease_s!r} and {retry_s!r}, want seconds > 0, "
                             f"e.g. 0.25 and 2.0")
        self.lease_s = lease_s
        self.retry_s = retry_s
        self.clock = clock
        self.exchanges = 0  # round trips made (the benchmark and the tests count them)
        self._slices: dict[tuple[str, str], _Slice] = {}
        self._created: set[tuple[str, str]] = set()
        self._fail_fast = FailFast("the limit store", retry_s, lambda: self.clock())
        self._lock = threading.Lock()
        self._pool = open_store_pool(url, name="corridor-limits", max_size=2, schema=_SCHEMA,
                                     timeout=timeout)

    # -- what the limiters call ------------------------------------------------

    def take(self, tenant: str, kind: str, capacity: float, rate: float) -> float:
        """Take one unit and return 0.0, or return the seconds until one may be available."""
        with self._lock:
            now = self.clock()
            held = self._slice(tenant, kind, capacity, rate)
            if held.balance >= 1.0 and now - held.taken_at < self.lease_s:
                held.balance -= 1.0
                return 0.0
            if now < held.refused_until:
                return held.refused_until - now
            wanted = max(1.0, math.ceil(rate * self.lease_s))
            remaining = self._exchange(tenant, kind, held, now, wanted, whole=True)
            if held.balance >= 1.0:
                held.balance -= 1.0
                return 0.0
            return self._refused(held, now, 60.0 if rate <= 0 else (1.0 - remaining) / rate)

    def available(self, tenant: str, kind: str, capacity: float, rate: float) -> float:
        """0.0 while the tenant's budget is positive, else the seconds until it may be (a quota
        charged afterwards with :meth:`charge`, which may put it into debt)."""
        with self._lock:
            now = self.clock()
            held = self._slice(tenant, kind, capacity, rate)
            if held.balance > 0.0 and now - held.taken_at < self.lease_s:
                return 0.0
            if now < held.refused_until:
                return held.refused_until - now
            remaining = self._exchange(tenant, kind, held, now, max(1.0, rate * self.lease_s), whole=False)
            if held.balance > 0.0:
                return 0.0
            return self._refused(held, now, 60.0 if rate <= 0 else (1.0 - remaining) / rate)

    def charge(self, tenant: str, kind: str, amount: float) -> None:
        """Take ``amount`` from this process's slice; a debt goes to the shared bucket at once."""
        with self._lock:
            held = self._slices.get((tenant, kind))
            if held is None or amount <= 0:
                return
            held.balance -= amount
            if held.balance < 0.0:
                try:
                    self._exchange(tenant, kind, held, self.clock(), 0.0, whole=False)
                except DatabaseUnavailable:
                    pass  # the debt stays in the slice and goes with the next exchange

    def release(self) -> None:
        """Give every unused slice back (a process stopping); unreachable: they lapse instead."""
        with self._lock:
            for (tenant, kind), held in list(self._slices.items()):
                if held.balance != 0.0:
                    try:
                        self._exchange(tenant, kind, held, self.clock(), 0.0, whole=False)
                    except DatabaseUnavailable:
                        return

    def close(self) -> None:
        self.release()
        self._pool.close()

    # -- internals -------------------------------------------------------------

    def _slice(self, tenant: str, kind: str, capacity: float, rate: float) -> _Slice:
        held = self._slices.get((tenant, kind))
        if held is None or held.capacity != capacity or held.rate != rate:
            held = self._slices[(tenant, kind)] = _Slice(float(capacity), float(rate))
        return held

    def _refused(self, held: _Slice, now: float, wait: float) -> float:
        held.refused_until = now + min(wait, self.lease_s)
        return wait

    def _exchange(self, tenant: str, kind: str, held: _Slice, now: float, wanted: float, *,
                  whole: bool) -> float:
        """Give back ``held.balance`` (a debt when negative), take up to ``wanted`` into it; returns
        what the shared bucket holds afterwards."""
        params: dict[str, Any] = {"tenant": tenant, "kind": kind, "capacity": held.capacity,
                                  "rate": held.rate, "returned": held.balance, "wanted": wanted}
        with self._fail_fast.attempt(now), transaction(self._pool) as db:
            if not db.autocommit:
                db.autocommit = True
            if (tenant, kind) not in self._created:
                db.execute(_CREATE, params)
            granted, remaining = db.execute(_EXCHANGE[whole], params).fetchone()
        self.exchanges += 1
        self._created.add((tenant, kind))
        held.balance = float(granted)
        held.taken_at = now
        held.refused_until = float("-inf")
        return float(remaining)


def open_shared_buckets(database: str) -> SharedBuckets:
    """The site's shared buckets in the PostgreSQL ``database`` (``RateLimiter(..., buckets=)``,
    ``TokenQuota(..., buckets=)``)."""
    return SharedBuckets(database)
