"""Every shared store when its database goes away and comes back: a call made while the server is
stopped raises ``DatabaseUnavailable`` within a bounded wait (no hang), and the same store object
works again once the server is started, without being reopened.

The server here is this module's own (stopping the session's would disturb other tests)."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from policies import Policy
from policies.bundle import Operator
from scheduler.bundle_store import PgBundleArchive
from scheduler.crisis import CrisisRegistry
from scheduler.crisis.pg_store import PgCrisisStore
from scheduler.database import DatabaseUnavailable
from serving.batch.pg_store import PgBatchStore
from serving.batch.records import FileRecord
from serving.gateway.errors import RateLimited, Unavailable
from serving.gateway.limits import RateLimiter
from serving.gateway.pg_keys import PgKeyRecords
from serving.gateway.keys import KeyRecord
from serving.gateway.shared_auth_failures import SharedFailureCounter
from serving.gateway.shared_limits import SharedBuckets

pytestmark = pytest.mark.postgres

TIMEOUT = 1.0  # the pools' wait for a connection
BOUND = 8.0  # what a caller may wait at most before DatabaseUnavailable


class _Ledger:
    def append_many(self, drafts):
        return [{} for _ in drafts]


@pytest.fixture(scope="module")
def server():
    from tests.postgres_server import PostgresServer

    with PostgresServer() as running:
        yield running


@pytest.fixture
def url(server, request):
    if server._process is None or server._process.poll() is not None:
        server.start()
    return server.create_database("outage_" + request.node.name.split("[")[0][-40:].lower())


def _down_then_up(server, call):
    """``call()`` raises DatabaseUnavailable (quickly) while the server is stopped, then works."""
    server.stop("immediate")
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable):
            call()
        assert time.monotonic() - started < BOUND
    finally:
        server.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            return call()
        except DatabaseUnavailable:
            assert time.monotonic() < deadline, "the store did not recover after the server came back"
            time.sleep(0.2)


def test_the_batch_store_refuses_while_down_and_recovers(server, url, tmp_path):
    store = PgBatchStore(url, staging=tmp_path, timeout=TIMEOUT)
    try:
        staged = store.staging_path()
        staged.write_bytes(b'{"a":1}\n')
        store.add_file(FileRecord("file-1", "fr-interior", "in.jsonl", "batch", 8, 1), staged)
        assert _down_then_up(server, lambda: store.get_file("file-1", "fr-interior")).bytes == 8
        with store.open_file("file-1") as handle:
            assert handle.read() == b'{"a":1}\n'
    finally:
        store.close()


def test_the_key_records_refuse_a_due_refresh_while_down_and_recover(server, url):
    records = PgKeyRecords(url, refresh_every_s=0.0, timeout=TIMEOUT)
    try:
        records.update(lambda r: r.__setitem__("k1", KeyRecord("k1", "0" * 64, "app", "fr-interior")))
        assert set(_down_then_up(server, records.refresh)) == {"k1"}
    finally:
        records.close()


def test_the_crisis_registry_refuses_while_down_and_recovers(server, url, default_policy):
    store = PgCrisisStore(url, timeout=TIMEOUT)
    try:
        registry = CrisisRegistry(default_policy, _Ledger(), None, store=store,
                                  clock=lambda: dt.datetime(2026, 11, 28, tzinfo=dt.UTC))
        scope = {"tenants": ["fr-interior"], "markings": ["Diffusion Restreinte"],
                 "models": ["corridor-tiny"], "directions": ["FR->DE"]}
        anne = Operator(operator="anne", jurisdiction="FR")
        record = _down_then_up(server, lambda: registry.declare(anne, scope=scope, reason="r",
                                                                valid_for_hours=1))
        assert [r.id for r in store.read()] == [record.id]
    finally:
        store.close()


def test_the_bundle_archive_refuses_while_down_and_recovers(server, url):
    archive = PgBundleArchive(url, timeout=TIMEOUT)
    try:
        policy = Policy.load()
        assert _down_then_up(server, lambda: archive.put(policy.bundle)) == policy.digest
        assert archive.get(policy.digest) == policy.bundle
    finally:
        archive.close()


def _503_while_down_then_recovers(server, call, *, settle_s: float = 0.0) -> None:
    """``call()`` is a 503 with ``Retry-After: 1`` (a limiter with ``retry_s=0.5``) within a bounded
    wait while the server is stopped, and a second one without waiting; it works again, by
    itself, once the server is started. ``settle_s``: a pause after stopping it."""
    server.stop("immediate")
    try:
        time.sleep(settle_s)
        started = time.monotonic()
        with pytest.raises(Unavailable) as info:
            call()
        assert time.monotonic() - started < BOUND
        assert (info.value.code, info.value.headers) == ("limits_unavailable", {"Retry-After": "1"})
        started = time.monotonic()
        with pytest.raises(Unavailable):
            call()
        assert time.monotonic() - started < 0.1, "a second refusal does not wait on the database"
    finally:
        server.start()
    deadline = time.monotonic() + 20
    while True:
        try:
            call()
            return
        except Unavailable:
            assert time.monotonic() < deadline
            time.sleep(0.2)


def test_the_limiter_answers_503_while_down_without_waiting_each_time_and_recovers(server, url):
    buckets = SharedBuckets(url, timeout=TIMEOUT, retry_s=0.5, lease_s=0.05)
    try:
        limiter = RateLimiter(Policy.load(), buckets=buckets)
        limiter.admit("fr-interior")
        _503_while_down_then_recovers(server, lambda: limiter.admit("fr-interior"),
                                      settle_s=0.1)  # the slice held lapses
    finally:
        buckets.close()


def test_a_failed_login_is_503_while_the_counter_is_down_without_waiting_each_time_and_recovers(server, url):
    counter = SharedFailureCounter(url, timeout=TIMEOUT, retry_s=0.5)
    try:
        limiter = RateLimiter(Policy.load(), auth_failures=3, failure_counter=counter)
        limiter.auth_failed("203.0.113.7")
        _503_while_down_then_recovers(server, lambda: limiter.auth_failed("203.0.113.7"))  # 2nd counted
        limiter.auth_failed("203.0.113.7")  # the third starts the episode: none counted while down
        with pytest.raises(RateLimited):
            limiter.auth_failed("203.0.113.7")
    finally:
        counter.close()
