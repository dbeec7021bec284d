"""A gateway assembled as ``corridor up`` assembles it — ledger, crisis registry, security feed,
rate limits, batch service — in front of stub upstreams, for the hardening regression tests.

Built only from constructor arguments the gateway has long had; a test that needs a newer
service attaches it to ``stack.gateway`` itself, so each test fails on older code for the
reason it tests, not because this helper could not be built.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from policies import Policy
from scheduler.crisis import STORE_FILENAME, CrisisRegistry
from scheduler.ledger import Ledger
from serving.batch import BatchService, BatchSettings
from serving.feed import LedgerFollower, SecurityFeed
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.gateway.limits import RateLimiter
from serving.routing import Router, StaticEndpoints
from stub_upstream import ServerThread, make_stub

from gateway_stack import endpoint


@dataclass
class HardenedStack:
    url: str
    home: Path
    keys: dict[str, str]
    gateway: Gateway
    ledger: Ledger
    feed: SecurityFeed
    follower: LedgerFollower
    endpoints: StaticEndpoints

    def call(self, method: str, path: str, who: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers.setdefault("authorization", f"Bearer {self.keys[who]}")
        return httpx.request(method, self.url + path, headers=headers, timeout=20, **kwargs)

    def raw(self, method: str, path: str, headers: list[tuple[str, str]], **kwargs: Any) -> httpx.Response:
        """A request with these header lines, repeated names kept."""
        return httpx.request(method, self.url + path, headers=headers, timeout=20, **kwargs)

    def chat(self, who: str, **body: Any) -> httpx.Response:
        payload = {"model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}], **body}
        return self.call("POST", "/v1/chat/completions", who, json=payload)

    def feed_text(self) -> str:
        self.follower.poll()
        return self.feed.path.read_text("utf-8") if self.feed.path.exists() else ""

    def ledger_text(self) -> str:
        return json.dumps(self.ledger.entries(limit=1000), ensure_ascii=False)


@contextlib.contextmanager
def hardened_stack(home: Path, *, policy: Policy | None = None, auth_failures: int = 5,
                   pools: tuple[str, ...] = ("fr-paris", "de-frankfurt"),
                   batch_settings: BatchSettings | None = None, jwt=None) -> Iterator[HardenedStack]:
    policy = policy or Policy.load()
    store = KeyStore()
    keys = {f"{t}/{role}": store.issue(role, tenant=t) for t in policy.tenants for role in ("app", "admin")}
    keys["*/auditor"] = store.issue("auditor", scope=("*",))
    keys["FR/operator"] = store.issue("operator", jurisdiction="FR")
    with contextlib.ExitStack() as stack:
        ledger = stack.enter_context(Ledger.open(home / "ledger"))
        feed = SecurityFeed(home / "security-events.jsonl")
        stack.callback(feed.close)
        follower = LedgerFollower(ledger, feed, start_at=0)
        crisis = CrisisRegistry(policy, ledger, home / STORE_FILENAME).start()
        stack.callback(crisis.stop)
        upstreams = {pool: stack.enter_context(ServerThread(make_stub(pool))).url for pool in pools}
        endpoints = StaticEndpoints([endpoint(pool, url, model) for pool, url in upstreams.items()
                                     for model in ("corridor-tiny", "minilm")])
        gateway = Gateway(policy=policy, ledger=ledger, auth=Authenticator(store, jwt),
                          router=Router(policy, endpoints, declarations=crisis.declarations),
                          crisis=crisis, events=feed,
                          limiter=RateLimiter(policy, ledger=ledger, feed=feed,
                                              auth_failures=auth_failures, auth_window_s=30.0))
        gateway.batches = BatchService.open(home / "batches", settings=batch_settings)
        server = stack.enter_context(ServerThread(create_app(gateway)))
        yield HardenedStack(server.url, home, keys, gateway, ledger, feed, follower, endpoints)
