"""Per-tenant limits shared by a site's gateway processes (:mod:`serving.gateway.shared_limits`):
together the processes never admit more than the tenant's limit, the database is asked a few
times per second and not per request, and a limit store that cannot be reached is a 503 with
``Retry-After``. The cases on a real database carry the ``postgres`` marker."""

from __future__ import annotations

import threading
import time
import pytest

from policies import Policy
from scheduler.database import DatabaseUnavailable
from serving.gateway.errors import RateLimited, Unavailable
from serving.gateway.limits import RateLimiter
from serving.gateway.shared_limits import SharedBuckets, open_shared_buckets
from serving.gateway.token_quota import TokenQuota

from quota_policy import policy_with



@pytest.fixture
def shared(postgres_url):
    opened: list[SharedBuckets] = []

    def open_one(**options) -> SharedBuckets:
        opened.append(SharedBuckets(postgres_url, **options) if options else open_shared_buckets(postgres_url))
        return opened[-1]

    yield open_one
    for buckets in opened:
        buckets.close()


def _admitted(limiter: RateLimiter, tenant: str = "fr-interior") -> bool:
    try:
        limiter.admit(tenant)
        return True
    except RateLimited:
        return False


def test_two_processes_alternating_admit_no_more_than_the_tenants_limit(shared):
    policy = policy_with(requests_per_minute=30)  # 30 at once, then one every 2 s
    first, second = RateLimiter(policy, buckets=shared()), RateLimiter(policy, buckets=shared())
    started = time.monotonic()
    admitted = sum(_admitted(limiter) for _ in range(40) for limiter in (first, second))
    refill = (time.monotonic() - started) / 2.0
    assert admitted <= 30 + refill + 1
    assert admitted >= 30 - 2, "slices parked in one process cost the other at most a little"


def test_two_processes_racing_in_threads_admit_no_more_than_the_tenants_limit(shared):
    policy = policy_with(requests_per_minute=120)
    limiters = [RateLimiter(policy, buckets=shared()) for _ in range(2)]
    counts = [0, 0]
    go = threading.Barrier(2)

    def hammer(n: int) -> None:
        go.wait()
        for _ in range(200):
            counts[n] += _admitted(limiters[n])

    started = time.monotonic()
    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refill = (time.monotonic() - started) * 2.0
    assert sum(counts) <= 120 + refill + 1
    assert sum(counts) >= 100


def test_a_busy_tenant_costs_a_few_queries_per_second_not_one_per_request(shared):
    buckets = shared()
    limiter = RateLimiter(policy_with(requests_per_minute=600_000), buckets=buckets)
    started = time.monotonic()
    for _ in range(2000):
        limiter.admit("fr-interior")
    elapsed = time.monotonic() - started
    assert buckets.exchanges <= 1 + elapsed / buckets.lease_s + 2000 / 2500 + 1, buckets.exchanges


def test_a_throttled_tenant_is_not_a_query_per_refused_request(shared):
    buckets = shared()
    limiter = RateLimiter(policy_with(requests_per_minute=2), buckets=buckets)
    outcomes = [_admitted(limiter) for _ in range(200)]
    assert outcomes[:2] == [True, True] and not any(outcomes[2:])
    assert buckets.exchanges <= 10


def test_a_refusal_says_when_to_come_back(shared):
    limiter = RateLimiter(policy_with(requests_per_minute=1), buckets=shared())
    limiter.admit("fr-interior")
    with pytest.raises(RateLimited) as info:
        limiter.admit("fr-interior")
    assert 1 <= int(info.value.headers["Retry-After"]) <= 60


def test_a_token_debt_run_up_in_one_process_refuses_the_tenant_in_the_other(shared):
    policy = policy_with(tokens_per_minute=600)
    first, second = TokenQuota(policy, buckets=shared()), TokenQuota(policy, buckets=shared())
    first.admit("fr-interior")
    first.charge("fr-interior", 5000)  # an answer far beyond the budget
    with pytest.raises(RateLimited) as info:
        second.admit("fr-interior")
    assert info.value.code == "tokens_per_minute_exceeded"
    assert int(info.value.headers["Retry-After"]) >= 400  # (5000 - 600) / 10 per second
    second.admit("de-health")  # another tenant is not affected


def test_a_process_that_stops_gives_its_unused_slice_back(shared):
    policy = policy_with(requests_per_minute=600)
    leaving = shared(lease_s=5.0)
    RateLimiter(policy, buckets=leaving).admit("fr-interior")  # takes a slice of 50
    leaving.release()
    staying = RateLimiter(policy, buckets=shared(lease_s=5.0))
    assert sum(_admitted(staying) for _ in range(600)) >= 598


# -- the limit store unreachable: 503, Retry-After, no admission ---------------------------------

class Unreachable:
    retry_s = 2.0

    def take(self, *args):
        raise DatabaseUnavailable("connection refused")

    available = take

    def charge(self, *args):
        raise AssertionError("never charged: nothing was admitted")


def test_an_unreachable_limit_store_refuses_with_503_and_retry_after():
    with pytest.raises(Unavailable) as info:
        RateLimiter(Policy.load(), buckets=Unreachable()).admit("fr-interior")
    assert (info.value.status, info.value.code, info.value.headers) == (
        503, "limits_unavailable", {"Retry-After": "2"})
    with pytest.raises(Unavailable):
        TokenQuota(Policy.load(), buckets=Unreachable()).admit("fr-interior")


def test_the_gateway_answers_503_with_retry_after_when_the_limit_store_is_unreachable(tmp_path):
    from hardened_stack import hardened_stack

    with hardened_stack(tmp_path) as stack:
        stack.gateway.limiter = RateLimiter(stack.gateway.policy, buckets=Unreachable())
        response = stack.call("GET", "/v1/files", "fr-interior/admin")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "2"
        assert response.json()["error"]["code"] == "limits_unavailable"
