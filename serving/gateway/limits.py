"""Rate limits: a token bucket per tenant, and throttling of sources that keep failing to log in.

Per tenant, a bucket holds up to ``quotas.requests_per_minute`` tokens (a
minute's worth) and refills at that rate; each request (inference, files,
batches) takes one. An empty bucket is a 429 whose ``Retry-After`` says when
the next token comes. A quota of 0 refuses every request of the tenant. Tokens
per minute are :mod:`serving.gateway.token_quota`'s business.

Per source address, ``failures`` failed authentications within
``window_s`` throttle the source: from then on every *failed* authentication
from it is a 429 instead of a 401, until the source has been quiet for
``window_s``. A blocked source's failures are refused; its successful logins are
not: a valid credential is never counted nor throttled, whatever its source:
behind an ingress every caller may share one address, and one sender of bad
keys must not lock the others out (an API key holds 192 random bits, so
throttling is not what stops guessing; it keeps the noise down and reports
it). Each episode is written to the ledger once, as a ``security`` entry
(``detail.event = "auth_failure_burst"``, the route template, never the raw
path), which the security feed reports.

Both run on the gateway's event loop; in one process nothing here blocks except
the one ledger write per episode.

With several gateway processes, ``RateLimiter(..., buckets=open_shared_buckets(database),
failure_counter=open_shared_failure_counter(database))`` keeps the tenants' buckets
(:mod:`serving.gateway.shared_limits`) and the sources' failed authentications
(:mod:`serving.gateway.shared_auth_failures`) in the site's PostgreSQL database, so a tenant's
limit and a source's threshold hold across processes, and an episode is recorded once by
whichever process starts it. When that database cannot be reached, a request, and a failed
authentication, is 503 with ``Retry-After`` (code ``limits_unavailable``): never admitted
unchecked, never answered 401 uncounted.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from policies import Policy
from scheduler.current_policy import CurrentPolicy, current_of
from scheduler.database import DatabaseUnavailable
from scheduler.ledger import Ledger, LedgerEntryDraft
from serving.feed import SecurityFeed, rate_limited_record
from serving.gateway.errors import RateLimited, Unavailable

_MAX_SOURCES = 10_000


@dataclass(slots=True)
class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; :meth:`take` returns the wait."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """Take one token and return 0.0, or return the seconds until one is available.

        >>> bucket = TokenBucket(capacity=2, rate=1 / 30, tokens=2, updated=0.0)
        >>> [bucket.take(0.0), bucket.take(0.0), round(bucket.take(0.0))]
        [0.0, 0.0, 30]
        """
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        if self.rate <= 0:
            return 60.0
        return (1.0 - self.tokens) / self.rate


class Buckets(Protocol):
    """Buckets shared by a site's gateway processes (:class:`serving.gateway.shared_limits.SharedBuckets`)."""

    retry_s: float

    def take(self, tenant: str, kind: str, capacity: float, rate: float) -> float: ...
    def available(self, tenant: str, kind: str, capacity: float, rate: float) -> float: ...
    def charge(self, tenant: str, kind: str, amount: float) -> None: ...


@dataclass(frozen=True, slots=True)
class AuthVerdict:
    """What one failed authentication from a source comes to (:meth:`FailureCounter.failed`)."""

    refused_s: float = 0.0  # > 0: the source is in an episode; answer 429, Retry-After this
    burst: int = 0  # > 0: this failure started an episode, the burst's failures in the window


class FailureCounter(Protocol):
    """Failed authentications per source: this process's (:class:`LocalFailureCounter`), or the
    site's (:class:`serving.gateway.shared_auth_failures.SharedFailureCounter`)."""

    retry_s: float

    def failed(self, source: str, threshold: int, window_s: float) -> AuthVerdict: ...


class LocalFailureCounter:
    """Failures counted in this process's memory, by its clock (see the module docstring)."""

    retry_s = 0.0  # never unavailable

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def failed(self, source: str, threshold: int, window_s: float) -> AuthVerdict:
        """Count one failure; during an episode refuse it and prolong the episode."""
        now = self.clock()
        until = self._blocked_until.get(source)
        if until is not None and now < until:
            self._blocked_until[source] = now + window_s
            return AuthVerdict(refused_s=window_s)
        self._blocked_until.pop(source, None)
        failures = self._failures.get(source)
        if failures is None:
            if len(self._failures) >= _MAX_SOURCES:
                self._forget_quiet(now, window_s)
            failures = self._failures[source] = deque()
        failures.append(now)
        while failures and failures[0] <= now - window_s:
            failures.popleft()
        if len(failures) < threshold:
            return AuthVerdict()
        del self._failures[source]
        if len(self._blocked_until) >= _MAX_SOURCES:
            self._blocked_until = {s: u for s, u in self._blocked_until.items() if u > now}
        self._blocked_until[source] = now + window_s
        return AuthVerdict(burst=len(failures))

    def _forget_quiet(self, now: float, window_s: float) -> None:
        for source in [s for s, f in self._failures.items() if not f or f[-1] <= now - window_s]:
            del self._failures[source]
        if len(self._failures) >= _MAX_SOURCES:
            self._failures.clear()


def limits_unavailable(retry_s: float, error: DatabaseUnavailable,
                       cannot: str = "the request cannot be admitted or recorded") -> Unavailable:
    """The 503 of a request whose limit cannot be checked (the shared store is away)."""
    retry_after = max(1, math.ceil(retry_s))
    return Unavailable(f"the site's limit store cannot be reached, so {cannot}; "
                       f"retry after {retry_after} s ({error})", code="limits_unavailable",
                       headers={"Retry-After": str(retry_after)})


class RateLimiter:
    """Per-tenant request quotas and per-source authentication throttling (see the module docstring).

    ``ledger`` (optional) receives the ``security`` entry of each burst;
    ``feed`` (optional) the ``rate_limited`` record when a tenant starts being
    throttled (once per episode, not per 429). Given a :class:`CurrentPolicy`, quotas
    are read from the policy in force at each request (a changed quota starts a full bucket).
    ``buckets`` and ``failure_counter``: the tenants' buckets and the sources' failures shared
    with the site's other gateway processes (None: this process's own, in memory).
    """

    def __init__(self, policy: Policy | CurrentPolicy, *, ledger: Ledger | None = None, feed: SecurityFeed | None = None,
                 auth_failures: int = 10, auth_window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, buckets: Buckets | None = None,
                 failure_counter: FailureCounter | None = None) -> None:
        if auth_failures < 1 or auth_window_s <= 0:
            raise ValueError(f"auth throttle: got failures={auth_failures}, window_s={auth_window_s}; "
                             f"want failures >= 1 and window_s > 0, e.g. 10 and 60.0")
        self.current = current_of(policy)
        self.ledger = ledger
        self.feed = feed
        self.auth_failures = auth_failures
        self.auth_window_s = auth_window_s
        self.clock = clock
        self.buckets = buckets
        self.failure_counter = failure_counter if failure_counter is not None else LocalFailureCounter(clock)
        self._buckets: dict[str, TokenBucket] = {}
        self._limited: set[str] = set()

    @property
    def policy(self) -> Policy:
        """The policy in force."""
        return self.current.policy

    # -- tenants ------------------------------------------------------------

    def admit(self, tenant: str, *, endpoint: str | None = None, source: str | None = None) -> None:
        """Take one request from ``tenant``'s bucket, or raise :class:`RateLimited` (429)."""
        known = self.policy.tenants.get(tenant)
        if known is None:
            return  # the rulebook refuses unknown tenants with its own reason
        rpm = known.quotas.requests_per_minute
        if self.buckets is not None:
            try:
                wait = self.buckets.take(tenant, "requests", rpm, rpm / 60.0)
            except DatabaseUnavailable as exc:
                raise limits_unavailable(self.buckets.retry_s, exc) from exc
        else:
            now = self.clock()
            bucket = self._buckets.get(tenant)
            if bucket is None or bucket.capacity != rpm:
                bucket = self._buckets[tenant] = TokenBucket(rpm, rpm / 60.0, rpm, now)
            wait = bucket.take(now)
        if wait <= 0.0:
            if tenant in self._limited:
                self._limited.discard(tenant)
            return
        retry_after = max(1, math.ceil(wait))
        if tenant not in self._limited:
            self._limited.add(tenant)
            if self.feed is not None:
                self.feed.emit(rate_limited_record(tenant, limit_per_minute=rpm,
                                                   retry_after_s=retry_after, endpoint=endpoint,
                                                   source=source))
        raise RateLimited(
            f"rate limit reached for tenant {tenant}: {rpm} requests per minute; "
            f"retry after {retry_after} s", code="rate_limit_exceeded",
            headers={"Retry-After": str(retry_after), "X-RateLimit-Limit-Requests": str(rpm),
                     "X-RateLimit-Remaining-Requests": "0"})

    # -- sources that fail to authenticate ------------------------------------

    def auth_failed(self, source: str | None, *, endpoint: str | None = None) -> None:
        """Count a failed authentication from ``source`` (the gateway calls it for failed
        credentials only: a valid credential is never counted, nor refused).

        Returns when the caller should answer 401; the failure that reaches the threshold
        starts an episode (written to the ledger once); every later failure during the
        episode raises :class:`RateLimited`. The shared store away: :class:`Unavailable` (503).
        """
        if source is None:
            return
        try:
            verdict = self.failure_counter.failed(source, self.auth_failures, self.auth_window_s)
        except DatabaseUnavailable as exc:
            raise limits_unavailable(self.failure_counter.retry_s, exc,
                                     "a failed authentication cannot be counted") from exc
        if verdict.refused_s > 0:
            raise self._throttled(max(1, math.ceil(verdict.refused_s)))
        if verdict.burst and self.ledger is not None:
            self.ledger.append(LedgerEntryDraft(
                kind="security", allowed=False, reasons=["AUTH_FAILURE_BURST"],
                policy_digest=self.policy.digest,
                detail={"event": "auth_failure_burst", "source": source, "failures": verdict.burst,
                        "window_s": self.auth_window_s, "endpoint": endpoint}))

    @staticmethod
    def _throttled(retry_after: int) -> RateLimited:
        return RateLimited(
            f"too many failed authentications from your address; retry after {retry_after} s "
            f"(valid credentials are not affected)", code="too_many_authentication_failures",
            headers={"Retry-After": str(retry_after)})
