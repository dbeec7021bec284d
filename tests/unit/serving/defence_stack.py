"""A gateway on loopback with the crisis registry, the security feed and rate limits attached,
in front of stub upstreams; keys for two operators per jurisdiction."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from policies import Policy
from scheduler.ledger import Ledger
from scheduler.crisis import STORE_FILENAME, CrisisRegistry
from serving.feed import LedgerFollower, SecurityFeed
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.routing import Router, StaticEndpoints
from serving.gateway.limits import RateLimiter
from stub_upstream import ServerThread, make_stub

from gateway_stack import endpoint


@dataclass
class DefenceStack:
    url: str
    home: Path
    keys: dict[str, str]
    gateway: Gateway
    ledger: Ledger
    crisis: CrisisRegistry
    feed: SecurityFeed
    follower: LedgerFollower
    limiter: RateLimiter
    endpoints: StaticEndpoints
    upstreams: dict[str, str]

    def call(self, method: str, path: str, who: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys[who]}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def chat(self, who: str, marking: str | None = None, model: str = "corridor-tiny") -> httpx.Response:
        headers = {"X-Corridor-Marking": marking} if marking else {}
        return self.call("POST", "/v1/chat/completions", who, headers=headers,
                         json={"model": model, "messages": [{"role": "user", "content": "x"}]})

    def records(self) -> list[dict[str, Any]]:
        """Every record of the security feed file so far (after the follower caught up)."""
        self.follower.poll()
        path = self.feed.path
        return [json.loads(line) for line in path.read_text("utf-8").splitlines()] if path.exists() else []


@contextlib.contextmanager
def defence_stack(home: Path, *, pools: tuple[str, ...] = ("de-frankfurt",), policy: Policy | None = None,
                  auth_failures: int = 5, tick_s: float = 0.2) -> Iterator[DefenceStack]:
    policy = policy or Policy.load()
    keys = KeyStore()
    issued = {f"{t}/{role}": keys.issue(role, tenant=t) for t in policy.tenants for role in ("app", "admin")}
    issued["*/auditor"] = keys.issue("auditor", scope=("*",))
    for side in ("FR", "DE"):
        issued[f"{side}/operator"] = keys.issue("operator", jurisdiction=side)
        issued[f"{side}/operator-2"] = keys.issue("operator", jurisdiction=side)
    with contextlib.ExitStack() as stack:
        ledger = stack.enter_context(Ledger.open(home))
        feed = SecurityFeed(home / "security-events.jsonl")
        stack.callback(feed.close)
        follower = LedgerFollower(ledger, feed, start_at=0)
        crisis = CrisisRegistry(policy, ledger, home / STORE_FILENAME, tick_s=tick_s).start()
        stack.callback(crisis.stop)
        limiter = RateLimiter(policy, ledger=ledger, feed=feed, auth_failures=auth_failures,
                              auth_window_s=30.0)
        upstreams = {pool: stack.enter_context(ServerThread(make_stub(pool))).url for pool in pools}
        endpoints = StaticEndpoints([endpoint(pool, url) for pool, url in upstreams.items()])
        gateway = Gateway(policy=policy, ledger=ledger, auth=Authenticator(keys),
                          router=Router(policy, endpoints, declarations=crisis.declarations),
                          crisis=crisis, events=feed, limiter=limiter)
        server = stack.enter_context(ServerThread(create_app(gateway)))
        yield DefenceStack(server.url, home, issued, gateway, ledger, crisis, feed, follower, limiter,
                           endpoints, upstreams)
