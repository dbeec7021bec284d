"""A gateway built the way ``corridor up`` builds it — ledger, crisis registry, security feed,
rate limits, token budgets, cache salts, batch service — in front of stub upstreams, with a
counter of the requests and server errors it answered per role."""

from __future__ import annotations

import contextlib
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from policies import Policy
from scheduler.crisis import STORE_FILENAME, CrisisRegistry
from scheduler.ledger import Ledger
from serving.batch import BatchService
from serving.feed import LedgerFollower, SecurityFeed
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.gateway.limits import RateLimiter
from serving.gateway.token_quota import TokenQuota
from serving.routing import Endpoint, Router, StaticEndpoints
from serving.routing.cache_salt import CacheSalts
from stub_upstream import ServerThread, make_stub

#: Where the fuzz tests leave their per-role counts for the terminal summary.
SUMMARY = pytest.StashKey[str]()

#: The role each fuzzed key has, and the tenant or jurisdiction it acts for.
IDENTITIES = {"app": ("fr-interior", None), "admin": ("fr-interior", None),
              "auditor": (None, None), "operator": (None, "FR")}


@dataclass
class Tally:
    """Requests the gateway answered per role (by the key presented), and the 5xx among them."""

    requests: Counter = field(default_factory=Counter)
    server_errors: Counter = field(default_factory=Counter)
    failures: list = field(default_factory=list)


class Counting:
    """ASGI middleware counting answers per presented key's role."""

    def __init__(self, app, roles: dict[str, str], tally: Tally) -> None:
        self.app, self.roles, self.tally = app, roles, tally

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        token = headers.get(b"authorization", b"").decode("latin-1").removeprefix("Bearer ").strip()
        role = self.roles.get(token, "none")

        async def watch(message):
            if message["type"] == "http.response.start":
                self.tally.requests[role] += 1
                if message["status"] >= 500:
                    self.tally.server_errors[role] += 1
                    self.tally.failures.append((role, scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, watch)


@dataclass
class FuzzStack:
    url: str
    keys: dict[str, str]
    gateway: Gateway
    app: object
    tally: Tally


def gateway_schema() -> dict:
    """The OpenAPI schema of a gateway built like :func:`fuzz_stack`'s, without serving it
    (the test module reads it at collection)."""
    policy = Policy.load()
    with tempfile.TemporaryDirectory() as home, Ledger.open(Path(home) / "ledger") as ledger:
        gateway = Gateway(policy=policy, ledger=ledger, auth=Authenticator(KeyStore()),
                          router=Router(policy, StaticEndpoints()))
        gateway.batches = BatchService.open(Path(home) / "batches")
        try:
            return create_app(gateway).openapi()
        finally:
            gateway.batches.store.close()


@contextlib.contextmanager
def fuzz_stack(home: Path) -> Iterator[FuzzStack]:
    policy = Policy.load()
    store = KeyStore()
    keys = {}
    for role, (tenant, jurisdiction) in IDENTITIES.items():
        scope = ("*",) if role == "auditor" else ()
        keys[role] = store.issue(role, tenant=tenant, jurisdiction=jurisdiction, scope=scope)
    tally = Tally()
    with contextlib.ExitStack() as stack:
        ledger = stack.enter_context(Ledger.open(home / "ledger"))
        feed = SecurityFeed(home / "security-events.jsonl")
        stack.callback(feed.close)
        follower = LedgerFollower(ledger, feed, start_at=0).start()
        stack.callback(follower.stop)
        crisis = CrisisRegistry(policy, ledger, home / STORE_FILENAME).start()
        stack.callback(crisis.stop)
        items = []
        for pool in ("fr-paris", "de-frankfurt"):
            url = stack.enter_context(ServerThread(make_stub(pool))).url
            jurisdiction = "FR" if pool.startswith("fr-") else "DE"
            items += [Endpoint(f"{model}@{pool}", model, pool, jurisdiction, f"node-{pool}", url)
                      for model in ("corridor-tiny", "minilm")]
        # Failed logins are counted but not throttled here: the fuzzer's probes without valid
        # credentials must keep answering 401 (throttling has its own tests).
        limiter = RateLimiter(policy, ledger=ledger, feed=feed, auth_failures=10**9)
        gateway = Gateway(policy=policy, ledger=ledger, auth=Authenticator(store),
                          router=Router(policy, StaticEndpoints(items), declarations=crisis.declarations),
                          crisis=crisis, events=feed, limiter=limiter, tokens=TokenQuota(policy),
                          cache_salts=CacheSalts.open(home), max_body_bytes=256 * 1024)
        gateway.batches = BatchService.open(home / "batches")
        app = create_app(gateway)
        server = stack.enter_context(ServerThread(Counting(app, {k: r for r, k in keys.items()}, tally)))
        yield FuzzStack(server.url, keys, gateway, app, tally)
