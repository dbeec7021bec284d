"""The control process's published state, as gateway workers read it: a replica the control
process places becomes routable in a worker, one removed stops being routed; a database that goes
away makes the worker not ready, and it is ready again on its own once the database is back."""

from __future__ import annotations

import time

import psycopg
import pytest

from scheduler.database import ensure_schema, site_url
from serving.installation.published import (ENDPOINTS, PublishedEndpoints, PublishedState,
                                            StatePublisher, endpoints_document)
from serving.routing import Endpoint, Router, StaticEndpoints
from policies import Policy, Workload, parse_marking

PARIS = Endpoint("r-paris", "corridor-tiny", "fr-paris", "FR", "node-1", "http://127.0.0.1:9001")
LYON = Endpoint("r-lyon", "corridor-tiny", "fr-lyon", "FR", "node-2", "http://127.0.0.1:9002")


def _until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@pytest.fixture
def published(postgres_url):
    publisher = StatePublisher(postgres_url)
    state = PublishedState(postgres_url, period_s=0.1, stale_after_s=0.5)
    yield publisher, state
    state.stop()
    publisher.close()


def test_a_placed_replica_becomes_routable_in_a_worker_and_a_removed_one_stops_being_routed(published):
    publisher, state = published
    placed = StaticEndpoints([PARIS])
    publisher.publish(ENDPOINTS, endpoints_document(placed.endpoints()))
    source = PublishedEndpoints(state)
    state.start()
    policy = Policy.load()
    router = Router(policy, source)
    workload = Workload(tenant="fr-interior", marking=parse_marking("PUBLIC"), kind="request",
                        model="corridor-tiny")
    assert [e.replica_id for e in router.route(workload).candidates] == ["r-paris"]

    publisher.publish(ENDPOINTS, endpoints_document([PARIS, LYON]))
    assert _until(lambda: {e.replica_id for e in router.route(workload).candidates} == {"r-paris", "r-lyon"})
    assert next(e for e in source.endpoints() if e.replica_id == "r-lyon") == LYON  # every field kept

    publisher.publish(ENDPOINTS, endpoints_document([LYON]))
    assert _until(lambda: [e.replica_id for e in router.route(workload).candidates] == ["r-lyon"])


def test_an_unchanged_document_is_not_written_again(published):
    publisher, _ = published
    assert publisher.publish(ENDPOINTS, endpoints_document([PARIS])) is True
    assert publisher.publish(ENDPOINTS, endpoints_document([PARIS])) is False
    with publisher.pool.connection() as connection:
        assert connection.execute("SELECT version FROM control_state WHERE name = %s",
                                  (ENDPOINTS,)).fetchone() == (1,)


def test_a_worker_is_not_ready_while_the_database_is_down_and_ready_again_once_it_is_back(
        postgres_server, published):
    publisher, state = published
    publisher.publish(ENDPOINTS, endpoints_document([PARIS]))
    state.start()
    assert _until(state.reachable)
    postgres_server.stop("immediate")
    try:
        assert _until(lambda: not state.reachable(), timeout=10)
        assert [e.replica_id for e in PublishedEndpoints(state).endpoints()] == ["r-paris"]  # last known kept
    finally:
        postgres_server.start()
    assert _until(state.reachable, timeout=20)


def test_each_site_of_the_corridor_has_its_own_schema_in_one_database(postgres_url):
    fr, de = site_url(postgres_url, "FR"), site_url(postgres_url, "DE")
    for url in (fr, de):
        ensure_schema(url)
    StatePublisher(fr).publish(ENDPOINTS, endpoints_document([PARIS]))
    StatePublisher(de).publish(ENDPOINTS, endpoints_document([LYON]))
    with psycopg.connect(postgres_url) as connection:
        rows = connection.execute("SELECT schemaname FROM pg_tables WHERE tablename = 'control_state' "
                                  "ORDER BY schemaname").fetchall()
    assert rows == [("corridor_de",), ("corridor_fr",)]
    fr_state = PublishedState(de).start()
    try:
        assert [e.replica_id for e in PublishedEndpoints(fr_state).endpoints()] == ["r-lyon"]
    finally:
        fr_state.stop()


def test_a_document_a_worker_could_not_apply_yet_is_applied_at_a_later_poll(published):
    publisher, state = published
    applied: list[str] = []
    archive: set[str] = set()

    def switch(body: dict) -> None:
        if body["digest"] not in archive:  # the bundle reaches the archive just after the digest
            raise LookupError(body["digest"])
        applied.append(body["digest"])

    state.on("policy", switch)
    publisher.publish("policy", {"digest": "sha256:new"})
    state.poll()
    assert applied == []
    archive.add("sha256:new")
    state.poll()
    assert applied == ["sha256:new"]
    state.poll()
    assert applied == ["sha256:new"]  # once applied, not again
