"""Several gateway processes on one port against the site's PostgreSQL database (no Ray): they
start and serve; killing one under load leaves the others serving, and every request answered
200 — before and after the kill — has its routing entry in the ledger, which verifies; with the
database down they refuse (503, ``Retry-After``) and recover on their own; failed logins
count against the site's one threshold.

These need the PostgreSQL ledger and stores (``open_ledger``, ``open_key_store``,
``open_batch_store``, ``open_crisis_store``, ``open_bundle_archive``, ``open_shared_buckets``,
``open_shared_failure_counter``)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import openai
import psycopg
import pytest

from scheduler.ledger.verify import verify_export
from tests.postgres.gateway_workers import MODEL, WorkerSite
from tests.stub_upstream import ServerThread, make_stub

MESSAGES = [{"role": "user", "content": "Bonjour"}]


@pytest.fixture
def stub():
    with ServerThread(make_stub("fr-paris")) as server:
        yield server.url


@pytest.fixture
def site(tmp_path, postgres_url, stub):
    running = WorkerSite(tmp_path / "home", postgres_url, stub, workers=2).start()
    yield running
    running.stop()


def _client(site: WorkerSite) -> openai.OpenAI:
    return openai.OpenAI(base_url=site.url + "/v1", api_key=site.keys["app"], max_retries=0,
                         default_headers={"X-Corridor-Marking": "DR"}, timeout=20)


def _entries(site: WorkerSite) -> tuple[list[dict], dict]:
    """Every ledger entry through the auditor API, and the signed tree head it verifies against."""
    auditor = {"Authorization": f"Bearer {site.keys['auditor']}"}
    head = httpx.get(site.url + "/audit/tree-head", headers=auditor, timeout=10).json()
    lines = httpx.get(site.url + "/audit/export", params={"tree_size": head["tree_size"]},
                      headers=auditor, timeout=60).text.splitlines()
    key = httpx.get(site.url + "/audit/public-key", headers=auditor, timeout=10).json()
    verify_export(lines, head, key)
    return [json.loads(line) for line in lines], head


def test_the_worker_processes_serve_one_port_with_the_official_sdk(site):
    client = _client(site)
    answers = [client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
               for _ in range(20)]
    assert {a.headers["x-corridor-pool"] for a in answers} == {"fr-paris"}
    assert all(a.parse().choices[0].message.content == "hello from fr-paris" for a in answers)
    decisions = {a.headers["x-corridor-decision"] for a in answers}
    entries, _ = _entries(site)
    logged = {e["entry"].get("decision_id") for e in entries}
    assert decisions <= logged
    with psycopg.connect(site.database) as connection:  # each reports its load to the autoscaler
        workers = connection.execute("SELECT worker FROM gateway_load").fetchall()
    assert len(workers) == 2


def test_failed_logins_spread_over_the_workers_are_throttled_at_the_sites_threshold_and_recorded_once(site):
    bad = {"Authorization": "Bearer cor_000000000000_guess"}
    statuses = [httpx.get(site.url + "/v1/models", headers=bad, timeout=10).status_code
                for _ in range(14)]  # a connection each: the kernel spreads them over both workers
    assert statuses == [401] * 10 + [429] * 4  # auth_throttle's default: 10 failures in 60 s
    bursts = [e for e in _entries(site)[0] if e["entry"]["kind"] == "security"]
    assert [e["entry"]["detail"]["failures"] for e in bursts] == [10]


def test_killing_one_worker_under_load_loses_no_acknowledged_request(site):
    acknowledged: list[tuple[float, str]] = []
    failures: list[str] = []
    killed_at: list[float] = []

    async def load(seconds: float, concurrency: int) -> None:
        client = openai.AsyncOpenAI(base_url=site.url + "/v1", api_key=site.keys["app"], max_retries=0,
                                    default_headers={"X-Corridor-Marking": "DR"}, timeout=20)
        deadline = time.monotonic() + seconds

        async def one_client() -> None:
            while time.monotonic() < deadline:
                try:
                    answer = await client.chat.completions.with_raw_response.create(
                        model=MODEL, messages=MESSAGES)
                except (openai.APIConnectionError, openai.APIStatusError) as exc:
                    failures.append(type(exc).__name__)
                    continue
                acknowledged.append((time.monotonic(), answer.headers["x-corridor-decision"]))

        async def killer() -> None:
            await asyncio.sleep(seconds / 3)
            await asyncio.to_thread(site.kill, 0)
            killed_at.append(time.monotonic())

        await asyncio.gather(killer(), *(one_client() for _ in range(concurrency)))
        await client.close()

    asyncio.run(load(seconds=9.0, concurrency=32))
    (kill_time,) = killed_at
    before = [d for t, d in acknowledged if t < kill_time]
    after = [d for t, d in acknowledged if t > kill_time + 0.5]
    assert len(before) > 50 and len(after) > 50, (len(before), len(after), failures[:5])
    assert site.processes[1].poll() is None  # the other worker kept serving
    # Only requests in flight on the killed worker fail (as connection errors, never a wrong 200).
    assert len(failures) <= 64, failures[:10]

    entries, head = _entries(site)
    routed = {e["entry"]["decision_id"] for e in entries if e["entry"].get("kind") == "routing"}
    missing = [d for _, d in acknowledged if d not in routed]
    assert missing == [], f"{len(missing)} acknowledged requests have no ledger entry"
    assert [e["index"] for e in entries] == list(range(head["tree_size"]))  # one order, no gap


def test_with_the_database_down_the_workers_refuse_with_retry_after_and_recover_on_their_own(
        site, postgres_server):
    client = _client(site)
    client.chat.completions.create(model=MODEL, messages=MESSAGES)
    postgres_server.stop("immediate")
    try:
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert refused.value.status_code == 503
        assert int(refused.value.response.headers["retry-after"]) > 0
        assert refused.value.body["code"] == "database_unavailable"
        deadline = time.monotonic() + 10
        while httpx.get(site.url + "/readyz", timeout=5).status_code != 503:
            assert time.monotonic() < deadline, "/readyz stayed ready with the database down"
            time.sleep(0.2)
    finally:
        postgres_server.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            answer = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
            break
        except openai.APIStatusError as exc:
            assert exc.status_code == 503 and time.monotonic() < deadline, exc
            time.sleep(0.5)
    decision = answer.headers["x-corridor-decision"]
    assert decision in {e["entry"].get("decision_id") for e in _entries(site)[0]}
    assert httpx.get(site.url + "/readyz", timeout=5).status_code == 200
