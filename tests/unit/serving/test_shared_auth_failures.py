"""Failed logins counted across a site's gateway processes (:mod:`serving.gateway.shared_auth_failures`):
the threshold holds for the failures of all processes together, an episode is recorded once
whichever process starts it, every process refuses the source's failures afterwards, and a
counter that cannot be reached fails closed. One process's own counting
(:class:`~serving.gateway.limits.LocalFailureCounter`) is checked here too. The cases on a real
database carry the ``postgres`` marker."""

from __future__ import annotations

import threading
import time

import pytest

from policies import Policy
from scheduler.database import DatabaseUnavailable
from serving.gateway.errors import RateLimited, Unavailable
from serving.gateway.limits import AuthVerdict, LocalFailureCounter, RateLimiter
from serving.gateway.shared_auth_failures import SharedFailureCounter

SOURCE = "203.0.113.7"


class Drafts:
    """The ledger's side of the limiter: the drafts it was given."""

    def __init__(self) -> None:
        self.drafts: list = []

    def append(self, draft) -> None:
        self.drafts.append(draft)


@pytest.fixture
def counters(postgres_url):
    opened: list[SharedFailureCounter] = []

    def open_one(**options) -> SharedFailureCounter:
        opened.append(SharedFailureCounter(postgres_url, **options))
        return opened[-1]

    yield open_one
    for counter in opened:
        counter.close()


def _answer(limiter: RateLimiter, source: str = SOURCE) -> int:
    """The status the gateway answers a failed login with."""
    try:
        limiter.auth_failed(source, endpoint="/v1/models")
        return 401
    except RateLimited:
        return 429


def test_failures_spread_over_two_processes_throttle_at_their_combined_count_and_record_once(counters):
    ledger = Drafts()
    first, second = (RateLimiter(Policy.load(), ledger=ledger, auth_failures=4, auth_window_s=60.0,
                                 failure_counter=counters()) for _ in range(2))
    assert [_answer(limiter) for limiter in (first, second, first, second)] == [401] * 4
    (draft,) = ledger.drafts  # per-process counting: two failures each, no episode at all
    assert draft.detail["event"] == "auth_failure_burst"
    assert (draft.detail["source"], draft.detail["failures"]) == (SOURCE, 4)
    assert [_answer(second), _answer(first), _answer(second)] == [429] * 3
    assert _answer(first, "203.0.113.8") == 401, "another source counts on its own"
    assert len(ledger.drafts) == 1, "the episode is recorded once"


def test_concurrent_failures_from_two_processes_start_exactly_one_episode(counters):
    shared = (counters(), counters())
    verdicts: list[AuthVerdict] = []

    def fail(counter: SharedFailureCounter) -> None:
        for _ in range(10):
            verdicts.append(counter.failed(SOURCE, 5, 60.0))

    threads = [threading.Thread(target=fail, args=(counter,)) for counter in shared for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [v.burst for v in verdicts if v.burst] == [5]
    assert sum(1 for v in verdicts if v.refused_s > 0) == 40 - 5
    assert sum(1 for v in verdicts if v == AuthVerdict()) == 4


def test_a_process_refuses_a_source_it_knows_is_blocked_without_asking_again(counters):
    blocking, other = counters(sync_s=30.0), counters()
    assert blocking.failed(SOURCE, 1, 60.0).burst == 1
    assert other.failed(SOURCE, 1, 60.0).refused_s > 59, "blocked through another process: refused at once"
    asked = blocking.round_trips
    assert blocking.failed(SOURCE, 1, 60.0).refused_s > 59
    assert blocking.round_trips == asked, "known blocked: no round trip"


def test_an_episode_ends_after_a_quiet_window_and_old_rows_are_deleted(counters, postgres_url):
    import psycopg

    counter = counters(sync_s=0.0)
    assert counter.failed(SOURCE, 2, 0.3) == AuthVerdict()
    assert counter.failed(SOURCE, 2, 0.3).burst == 2
    assert counter.failed(SOURCE, 2, 0.3).refused_s > 0
    time.sleep(0.4)
    assert counter.failed(SOURCE, 2, 0.3) == AuthVerdict(), "quiet for the window: counted again"
    time.sleep(0.4)
    counter.failed("203.0.113.8", 2, 0.3)  # the next failure deletes the rows of the quiet sources
    with psycopg.connect(postgres_url) as db:
        assert db.execute("SELECT source FROM auth_failures").fetchall() == [("203.0.113.8",)]


class Unreachable:
    retry_s = 2.0

    def failed(self, *args):
        raise DatabaseUnavailable("connection refused")


def test_an_unreachable_counter_answers_a_failed_login_503_with_retry_after():
    with pytest.raises(Unavailable) as info:
        RateLimiter(Policy.load(), failure_counter=Unreachable()).auth_failed(SOURCE)
    assert (info.value.status, info.value.code, info.value.headers) == (
        503, "limits_unavailable", {"Retry-After": "2"})


def test_a_valid_key_never_reaches_the_failure_counter_and_a_bad_one_fails_closed(tmp_path):
    from hardened_stack import hardened_stack

    with hardened_stack(tmp_path) as stack:
        stack.gateway.limiter = RateLimiter(stack.gateway.policy, failure_counter=Unreachable())
        assert stack.call("GET", "/v1/files", "fr-interior/admin").status_code == 200
        bad = stack.call("GET", "/v1/files", None, headers={"authorization": "Bearer cor_000000000000_guess"})
        assert (bad.status_code, bad.headers["retry-after"]) == (503, "2")
        assert bad.json()["error"]["code"] == "limits_unavailable"


@pytest.mark.parametrize(("times", "want"), [
    pytest.param([0, 1, 2], [AuthVerdict(), AuthVerdict(), AuthVerdict(burst=3)],
                 id="the third failure within the window starts an episode"),
    pytest.param([0, 1, 11, 12, 13], [AuthVerdict()] * 4 + [AuthVerdict(burst=3)],
                 id="a failure that left the window no longer counts"),
    pytest.param([0, 0, 0, 5, 14, 25], [AuthVerdict()] * 2 + [AuthVerdict(burst=3)]
                 + [AuthVerdict(refused_s=10)] * 2 + [AuthVerdict()],
                 id="failures during an episode are refused and prolong it until a quiet window"),
])
def test_one_process_counts_failures_in_a_sliding_window(times, want):
    clock = iter(times)
    counter = LocalFailureCounter(lambda: next(clock))
    assert [counter.failed(SOURCE, 3, 10.0) for _ in times] == want
