"""Batches across a site's processes: a batch uploaded and created through a gateway worker is
run by the control process's executor (which takes it from the shared store), and its status and
output are read back through the worker. Needs the PostgreSQL stores."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time

import openai
import pytest
from prometheus_client import CollectorRegistry

from policies import Policy
from serving.batch import BatchPorts
from serving.installation.stores import open_batches, open_site_ledger
from serving.routing import Endpoint, Router, StaticEndpoints, UpstreamPool
from tests.postgres.gateway_workers import MODEL, WorkerSite
from tests.stub_upstream import ServerThread, make_stub


class ControlExecutor:
    """The control process's batch executor alone, on the site's database, in its own loop."""

    def __init__(self, site: WorkerSite) -> None:
        self.site = site
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> ControlExecutor:
        policy = Policy.load(self.site.bundle)
        self.ledger = open_site_ledger(self.site.home, self.site.database)
        self.service = open_batches(self.site.home, self.site.database)
        router = Router(policy, StaticEndpoints([Endpoint("stub-paris", MODEL, "fr-paris", "FR", "node-stub",
                                                          self.site.upstream)]))
        self.upstream = UpstreamPool()
        self.thread.start()

        async def start() -> None:
            await self.upstream.start()
            await self.service.start(BatchPorts(router=router, upstream=self.upstream, ledger=self.ledger,
                                                registry=CollectorRegistry()))

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            await self.service.stop()
            await self.upstream.close()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.ledger.close()


@pytest.fixture
def site(tmp_path, postgres_url):
    with ServerThread(make_stub("fr-paris")) as stub:
        running = WorkerSite(tmp_path / "home", postgres_url, stub.url, workers=2).start()
        yield running
        running.stop()


def test_a_batch_created_through_a_worker_is_run_by_the_control_process_and_read_back_through_a_worker(site):
    client = openai.OpenAI(base_url=site.url + "/v1", api_key=site.keys["admin"], max_retries=0, timeout=30)
    lines = [{"custom_id": f"line-{n}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": MODEL, "messages": [{"role": "user", "content": f"Bonjour {n}"}]}}
             for n in range(5)]
    upload = client.files.create(file=("in.jsonl", io.BytesIO(
        "\n".join(json.dumps(line) for line in lines).encode())), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", extra_headers={"X-Corridor-Marking": "DR"})
    time.sleep(1.5)
    assert client.batches.retrieve(batch.id).status == "validating"  # no executor in the workers
    with ControlExecutor(site):
        deadline = time.monotonic() + 60
        while (batch := client.batches.retrieve(batch.id)).status != "completed":
            assert batch.status in ("validating", "in_progress", "finalizing"), batch
            assert time.monotonic() < deadline, batch
            time.sleep(0.5)
    assert batch.request_counts.completed == 5 and batch.request_counts.failed == 0
    output = [json.loads(line) for line in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(line["custom_id"] for line in output) == [f"line-{n}" for n in range(5)]
    assert {line["response"]["body"]["system_fingerprint"] for line in output} == {"fr-paris"}


def test_a_batch_cancelled_through_a_worker_is_cancelled_by_the_control_process(site):
    client = openai.OpenAI(base_url=site.url + "/v1", api_key=site.keys["admin"], max_retries=0, timeout=30)
    line = {"custom_id": "only", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": MODEL, "messages": [{"role": "user", "content": "Bonjour"}]}}
    upload = client.files.create(file=("in.jsonl", io.BytesIO(json.dumps(line).encode())), purpose="batch")
    batch = client.batches.create(input_file_id=upload.id, endpoint="/v1/chat/completions",
                                  completion_window="24h", extra_headers={"X-Corridor-Marking": "DR"})
    assert client.batches.cancel(batch.id).status == "cancelling"
    with ControlExecutor(site):
        deadline = time.monotonic() + 60
        while (batch := client.batches.retrieve(batch.id)).status != "cancelled":
            assert batch.status == "cancelling" and time.monotonic() < deadline, batch
            time.sleep(0.5)
