"""Tokens per minute per tenant (``quotas.tokens_per_minute``), from the usage vLLM reports.

How many tokens a request costs is known only once the replica answered, so
the quota works as a budget that may go into debt: a bucket of a minute's
worth refills continuously; each answer (streamed ones included) takes its
``usage.total_tokens``; while the bucket is empty or in debt, the tenant's next
requests are 429 with the seconds until it is positive again. A quota of 0
refuses every request of the tenant.

Given ``buckets`` (:mod:`serving.gateway.shared_limits`), the budget is shared by the site's
gateway processes; when that store cannot be reached, a request is 503 with ``Retry-After``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from policies import Policy
from scheduler.database import DatabaseUnavailable
from serving.gateway.errors import RateLimited
from serving.gateway.limits import Buckets, TokenBucket, limits_unavailable


class TokenQuota:
    """Per-tenant token budgets (see the module docstring); runs on the gateway's event loop."""

    def __init__(self, policy: Policy, *, clock: Callable[[], float] = time.monotonic,
                 buckets: Buckets | None = None) -> None:
        self.policy = policy
        self.clock = clock
        self.buckets = buckets
        self._buckets: dict[str, TokenBucket] = {}

    def _bucket(self, tenant: str) -> TokenBucket | None:
        known = self.policy.tenants.get(tenant)
        if known is None:
            return None
        bucket = self._buckets.get(tenant)
        if bucket is None:
            tpm = known.quotas.tokens_per_minute
            bucket = self._buckets[tenant] = TokenBucket(tpm, tpm / 60.0, tpm, self.clock())
        return bucket

    def admit(self, tenant: str) -> None:
        """Raise :class:`RateLimited` (429) while ``tenant``'s budget is used up."""
        if self.buckets is not None:
            known = self.policy.tenants.get(tenant)
            if known is None:
                return
            limit = known.quotas.tokens_per_minute
            try:
                wait = self.buckets.available(tenant, "tokens", limit, limit / 60.0)
            except DatabaseUnavailable as exc:
                raise limits_unavailable(self.buckets.retry_s, exc) from exc
            if wait <= 0:
                return
        else:
            bucket = self._bucket(tenant)
            if bucket is None:
                return  # the rulebook refuses unknown tenants with its own reason
            now = self.clock()
            bucket.tokens = min(bucket.capacity, bucket.tokens + (now - bucket.updated) * bucket.rate)
            bucket.updated = now
            if bucket.tokens > 0:
                return
            wait = 60.0 if bucket.rate <= 0 else (1.0 - bucket.tokens) / bucket.rate
            limit = int(bucket.capacity)
        retry_after = max(1, math.ceil(wait))
        raise RateLimited(
            f"token rate limit reached for tenant {tenant}: {limit} tokens per minute; "
            f"retry after {retry_after} s", code="tokens_per_minute_exceeded",
            headers={"Retry-After": str(retry_after), "X-RateLimit-Limit-Tokens": str(limit),
                     "X-RateLimit-Remaining-Tokens": "0"})

    def charge(self, tenant: str, tokens: int | None) -> None:
        """Take the ``tokens`` an answer used from ``tenant``'s budget (None: not reported)."""
        if not tokens:
            return
        if self.buckets is not None:
            self.buckets.charge(tenant, "tokens", tokens)
            return
        bucket = self._bucket(tenant)
        if bucket is not None:
            bucket.tokens -= tokens
