"""A gateway with the batch service on loopback, in front of stub upstreams that count load."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openai

from policies import Policy
from scheduler.ledger import Ledger
from serving.batch import BatchService, BatchSettings
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.routing import Endpoint, Router, StaticEndpoints
from stub_upstream import ServerThread, make_stub


class CountingStub:
    """An ASGI stub upstream that answers after ``delay`` s and counts requests in flight.

    Each request's ``user`` field (the tests put the tenant there) is counted
    apart, so tests can check per-tenant concurrency. A bulk request counts as
    one request per conversation it carries (``bulk_requests`` counts the bulk
    requests themselves).
    """

    def __init__(self, name: str, *, delay: float = 0.0, fail: bool = False, bulk: bool = True) -> None:
        self.app = make_stub(name, fail=fail, bulk=bulk)
        self.delay = delay
        self.bulk_requests = 0
        self.requests = 0
        self.inflight = 0
        self.max_inflight = 0
        self.by_user: Counter[str] = Counter()
        self.max_by_user: Counter[str] = Counter()
        self.custom: Counter[str] = Counter()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":  # the gateway reads /metrics too
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            payload = json.loads(body)
            user = payload.get("user") or ""
        except (ValueError, AttributeError):
            payload, user = {}, ""
        lines = 1
        if scope["path"] == "/v1/chat/completions/batch":
            self.bulk_requests += 1
            lines = len(payload.get("messages") or ())
        self.requests += lines
        self.inflight += lines
        self.by_user[user] += lines
        self.max_inflight = max(self.max_inflight, self.inflight)
        self.max_by_user[user] = max(self.max_by_user[user], self.by_user[user])
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            sent = False

            async def replay():
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, replay, send)
        finally:
            self.inflight -= lines
            self.by_user[user] -= lines


@dataclass
class BatchStack:
    url: str
    keys: dict[str, str]
    gateway: Gateway
    ledger: Ledger
    endpoints: StaticEndpoints
    stubs: dict[str, CountingStub]
    service: BatchService
    home: Path
    urls: dict[str, str] = field(default_factory=dict)

    def client(self, who: str = "fr-interior/admin", **headers: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.keys[who], max_retries=0,
                             timeout=30, default_headers=headers)

    def batch_entries(self, batch_id: str) -> list[dict]:
        items = self.ledger.entries(kind="placement", limit=1000)["data"]
        return [i["entry"] for i in items if i["entry"]["detail"].get("batch") == batch_id]


def endpoint(pool: str, url: str, model: str = "corridor-tiny", replica: str | None = None) -> Endpoint:
    jurisdiction = "FR" if pool.startswith("fr-") else "DE"
    return Endpoint(replica or f"{model}@{pool}", model, pool, jurisdiction, f"node-{pool}", url)


@contextlib.contextmanager
def batch_stack(home: Path, *, replicas: dict[str, tuple[str, str]] | None = None, delay: float = 0.0,
                settings: BatchSettings | None = None, provisioner=None,
                policy: Policy | None = None, database: str | None = None) -> Iterator[BatchStack]:
    """``replicas``: replica id → (pool, model), each served by its own counting stub;
    ``database``: the batch store in that PostgreSQL database instead of SQLite in ``home``.

    Default: one ``corridor-tiny`` replica in fr-paris and one in de-frankfurt,
    and a ``minilm`` replica in fr-paris.
    """
    policy = policy or Policy.load()
    replicas = replicas if replicas is not None else {
        "chat-fr-r1": ("fr-paris", "corridor-tiny"), "chat-de-r1": ("de-frankfurt", "corridor-tiny"),
        "embed-r1": ("fr-paris", "minilm")}
    keys = KeyStore()
    issued = {f"{t}/{role}": keys.issue(role, tenant=t) for t in policy.tenants for role in ("app", "admin")}
    issued["*/auditor"] = keys.issue("auditor", scope=("*",))
    with contextlib.ExitStack() as stack:
        ledger = stack.enter_context(Ledger.open(home / "ledger"))
        stubs, urls, items = {}, {}, []
        for replica_id, (pool, model) in replicas.items():
            stubs[replica_id] = CountingStub(pool, delay=delay)
            urls[replica_id] = stack.enter_context(ServerThread(stubs[replica_id])).url
            items.append(endpoint(pool, urls[replica_id], model, replica_id))
        endpoints = StaticEndpoints(items)
        service = BatchService.open(home / "state", database=database, settings=settings,
                                    provisioner=provisioner)
        gateway = Gateway(policy=policy, ledger=ledger, auth=Authenticator(keys),
                          router=Router(policy, endpoints), batches=service)
        server = stack.enter_context(ServerThread(create_app(gateway)))
        yield BatchStack(server.url, issued, gateway, ledger, endpoints, stubs, service, home, urls)


def chat_lines(count: int, *, model: str = "corridor-tiny", user: str = "", prefix: str = "req") -> bytes:
    """A JSONL input of ``count`` chat requests with custom ids ``<prefix>-<n>``."""
    lines = [json.dumps({"custom_id": f"{prefix}-{n}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": model, "user": user,
                                  "messages": [{"role": "user", "content": f"dossier {n}"}]}})
             for n in range(count)]
    return ("\n".join(lines) + "\n").encode()


def upload(client: openai.OpenAI, content: bytes, name: str = "input.jsonl") -> str:
    return client.files.create(file=(name, io.BytesIO(content)), purpose="batch").id


def wait_for(client: openai.OpenAI, batch_id: str, statuses=("completed", "failed", "cancelled", "expired"),
             timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} still {batch.status} after {timeout} s: {batch}")
        time.sleep(0.05)


def results(client: openai.OpenAI, batch) -> list[dict]:
    """Every output and error line of a finished batch."""
    lines = []
    for file_id in (batch.output_file_id, batch.error_file_id):
        if file_id:
            lines += [json.loads(line) for line in client.files.content(file_id).text.splitlines()]
    return lines
