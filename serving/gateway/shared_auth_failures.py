"""Failed authentications counted across a site's gateway processes, in PostgreSQL.

One row per source in ``auth_failures``: the database-clock times of its failures within the
window (at most ``threshold`` of them), ``blocked_until`` (the end of its episode) and
``started`` (the burst of the failure that started the episode, 0 for any other). Each failure
is one ``INSERT … ON CONFLICT DO UPDATE`` on that row, which PostgreSQL applies to the row's
newest version under its lock, so concurrent failures from several processes are counted one
after the other, exactly as one process counts them
(:class:`~serving.gateway.limits.LocalFailureCounter`):

- during an episode the failure is refused and prolongs the episode to ``window_s`` from now;
- otherwise it is added to the failures still within ``window_s``; the one that makes them
  ``threshold`` starts the episode and is the only statement that returns ``started > 0``, so
  exactly one process, whichever it is, writes the episode's ledger entry.

Only failures come here: a valid credential never touches this table, from any source. A source
blocked through another process is refused by this one at its next failure, since every failure
asks the database — except that a process that has just learned a source is blocked refuses its
further failures by itself for ``sync_s`` (1 s) after asking, so a storm of bad keys costs at
most one round trip per second per blocked source and process. Failures refused that way do not
prolong the episode, so a source that then goes quiet is let go up to ``sync_s`` earlier than
one process would; every process agrees on when (the row's ``blocked_until``).

When the database cannot be reached, :meth:`SharedFailureCounter.failed` raises
:class:`~scheduler.database.DatabaseUnavailable`, and for ``retry_s`` raises it again without
waiting on the database; the gateway answers the failed login 503 ``limits_unavailable`` with
``Retry-After``. Not 401: a failure that cannot be counted must not be answered as one that was,
or N guesses would go unthrottled; not 429: the gateway does not know the source is throttled,
and the episode could not be written to the ledger, which is in the same database. (The API
key store, in that database too, answers 503 itself within 0.25 s, so no key guess is checked
meanwhile.)

Rows whose last failure is older than the window are deleted, by each process at most once per
``window_s``, so the table holds only the sources that failed lately.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from scheduler.database_sessions import FailFast, open_store_pool, transaction
from serving.gateway.limits import AuthVerdict

_SCHEMA = """
CREATE TABLE IF NOT EXISTS auth_failures (
    source TEXT PRIMARY KEY,
    failures DOUBLE PRECISION[] NOT NULL,
    blocked_until DOUBLE PRECISION NOT NULL,
    started INTEGER NOT NULL,
    updated DOUBLE PRECISION NOT NULL
)
"""
_NOW = "extract(epoch from statement_timestamp())::float8"
_NONE = "'{}'::float8[]"
_MAX_KNOWN = 10_000


def _after_one_more(failures: str, blocked: str) -> str:
    """A SELECT of a source's row (failures, blocked_until, started, updated) after one more
    failure, from its ``failures`` and ``blocked`` until before it (SQL expressions)."""
    starts = f"({blocked} <= n AND cardinality(kept) >= %(threshold)s)"
    refused_or_starts = f"({blocked} > n OR {starts})"
    return (f"SELECT CASE WHEN {refused_or_starts} THEN {_NONE} ELSE kept END, "
            f"CASE WHEN {refused_or_starts} THEN n + %(window)s ELSE {blocked} END, "
            f"CASE WHEN {starts} THEN cardinality(kept) ELSE 0 END, n "
            f"FROM (SELECT n, ARRAY(SELECT t FROM unnest({failures} || n) AS t "
            f"WHERE t > n - %(window)s) AS kept FROM (SELECT {_NOW} AS n) AS clock) AS step")


_FAILED = (f"INSERT INTO auth_failures AS f (source, failures, blocked_until, started, updated) "
           f"SELECT %(source)s, first.* FROM ({_after_one_more(_NONE, '0')}) AS first "
           f"ON CONFLICT (source) DO UPDATE SET (failures, blocked_until, started, updated) = "
           f"({_after_one_more('f.failures', 'f.blocked_until')}) "
           f"RETURNING started, blocked_until - {_NOW}")
_PRUNE = f"DELETE FROM auth_failures WHERE updated <= {_NOW} - %(window)s"


class SharedFailureCounter:
    """Every source's failed authentications in the PostgreSQL database at ``url`` (see the
    module docstring). Called from the gateway's event loop, for failed credentials only: a
    failure blocks it for one round trip (bounded by ``timeout`` when the database is away)."""

    def __init__(self, url: str, *, sync_s: float = 1.0, retry_s: float = 2.0, timeout: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if sync_s < 0 or retry_s <= 0:
            raise ValueError(f"sync_s and retry_s: got {sync_s!r} and {retry_s!r}, want seconds, "
                             f"sync_s >= 0 and retry_s > 0, e.g. 1.0 and 2.0")
        self.sync_s = sync_s
        self.retry_s = retry_s
        self.clock = clock
        self.round_trips = 0  # the tests count them
        self._blocked: dict[str, tuple[float, float]] = {}  # source -> (until, asked at), this clock
        self._fail_fast = FailFast("the limit store", retry_s, lambda: self.clock())
        self._pruned = float("-inf")
        self._lock = threading.Lock()
        self._pool = open_store_pool(url, name="corridor-auth-failures", max_size=2, schema=_SCHEMA,
                                     timeout=timeout)

    def failed(self, source: str, threshold: int, window_s: float) -> AuthVerdict:
        """Count one failure from ``source`` across the site (see the module docstring)."""
        with self._lock:
            now = self.clock()
            until, asked = self._blocked.get(source, (float("-inf"), float("-inf")))
            if now < until and now - asked < self.sync_s:
                return AuthVerdict(refused_s=until - now)
            params: dict[str, Any] = {"source": source, "threshold": threshold, "window": window_s}
            with self._fail_fast.attempt(now), transaction(self._pool) as db:
                db.autocommit = True
                if now - self._pruned >= window_s:
                    db.execute(_PRUNE, params)
                    self._pruned = now
                started, blocked_s = db.execute(_FAILED, params).fetchone()
            self.round_trips += 1
            self._remember(source, now, blocked_s)
            if started:
                return AuthVerdict(burst=started)
            return AuthVerdict(refused_s=max(0.0, blocked_s))

    def close(self) -> None:
        self._pool.close()

    def _remember(self, source: str, now: float, blocked_s: float) -> None:
        if blocked_s <= 0:
            self._blocked.pop(source, None)
            return
        if len(self._blocked) >= _MAX_KNOWN:
            self._blocked = {s: known for s, known in self._blocked.items() if known[0] > now}
            if len(self._blocked) >= _MAX_KNOWN:
                self._blocked.clear()
        self._blocked[source] = (now + blocked_s, now)


def open_shared_failure_counter(database: str) -> SharedFailureCounter:
    """The site's shared failure counts in the PostgreSQL ``database`` (``RateLimiter(...,
    failure_counter=)``)."""
    return SharedFailureCounter(database)
