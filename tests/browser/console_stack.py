"""A real gateway for the console tier: ledger, crisis registry, security feed and keys for
every role, in front of stub upstreams, filled with real traffic.

Nothing here stands in for the console or the APIs it calls: the ledger, the crisis
registry, the security feed and its follower, the inventory's snapshot and the gateway
are the real ones. Only Ray's node list (what the inventory would read from a cluster)
and the deployments' replica list are given as data, and the upstreams are stubs.

:class:`Tamper` wraps the app: when a test sets ``tamper.mode`` it alters what the
gateway serves to the page (as a compromised server or a man in the middle would), so
the browser's verification can be seen to fail.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from policies import Policy
from policies.bundle import JURISDICTION_LABEL, POOL_LABEL
from policies.canonical import canonical_json
from scheduler.deployments import DeploymentView, ReplicaView
from scheduler.inventory import Inventory
from scheduler.snapshot import RayNode
from scheduler.ledger import Ledger
from scheduler.spec import Audience, DeploymentSpec
from scheduler.crisis import STORE_FILENAME, CrisisRegistry
from serving.feed import LedgerFollower, SecurityFeed
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.routing import Endpoint, Router, StaticEndpoints
from stub_upstream import ServerThread, make_stub

#: Replicas served by stubs: (replica id, model, pool). ``minilm`` runs only in France, so
#: German VS-NfD embeddings need a DE->FR declaration (the README's crisis drill).
REPLICAS = (("chat-fr-paris-r1", "corridor-tiny", "fr-paris"),
            ("chat-fr-lyon-r1", "corridor-tiny", "fr-lyon"),
            ("chat-de-frankfurt-r1", "corridor-tiny", "de-frankfurt"),
            ("chat-de-berlin-r1", "corridor-tiny", "de-berlin"),
            ("embed-fr-paris-r1", "minilm", "fr-paris"))

QUARANTINED_NODE = "node-rogue-0001"


def ray_nodes() -> list[RayNode]:
    """Two nodes per pool, and one node claiming fr-paris while labelled DE (quarantined)."""
    nodes = []
    for pool, jurisdiction in (("fr-paris", "FR"), ("fr-lyon", "FR"), ("de-frankfurt", "DE"),
                               ("de-berlin", "DE")):
        for n in range(2):
            nodes.append(RayNode(f"node-{pool}-{n}", True, {POOL_LABEL: pool, JURISDICTION_LABEL: jurisdiction},
                                 4.0, 3.0 if n == 0 else 4.0))
    nodes.append(RayNode(QUARANTINED_NODE, True, {POOL_LABEL: "fr-paris", JURISDICTION_LABEL: "DE"}, 4.0, 4.0))
    return nodes


class FixtureOperatorView:
    """The operator view of a scheduler whose Ray nodes are :func:`ray_nodes`: a real
    :class:`Inventory` (which writes the quarantine to the ledger) and replica views."""

    def __init__(self, policy: Policy, ledger: Ledger, endpoints: list[Endpoint]) -> None:
        with mock.patch("scheduler.inventory.read_ray_nodes", ray_nodes):
            self.inventory = Inventory(policy, ledger=ledger)
            self.snapshot = self.inventory.refresh()
        by_model: dict[str, list[Endpoint]] = {}
        for e in endpoints:
            by_model.setdefault(e.model, []).append(e)
        self.views = [
            DeploymentView(
                name=f"{model}-shared", status="ready", reason=None,
                spec=DeploymentSpec(f"{model}-shared", model, [Audience("fr-interior", "DR")], replicas=len(items)),
                replicas=tuple(ReplicaView(e.replica_id, f"{model}-shared", model, e.pool, e.jurisdiction,
                                           e.node_id, f"actor-{e.replica_id}", "ALIVE", e.url, None,
                                           (), None) for e in items))
            for model, items in by_model.items()]

    def pools(self) -> dict[str, Any]:
        return self.snapshot.to_json()

    def deployments(self) -> list[dict[str, Any]]:
        return [view.to_json() for view in self.views]


class Tamper:
    """ASGI wrapper altering the gateway's answers to the page while ``mode`` is set:

    - ``"entry"``: every entry of ``/audit/entries`` says the opposite decision;
    - ``"entry+leaf"``: the same, with ``leaf_hash`` recomputed to match the forged entry;
    - ``"proof"``: the first hash of each inclusion path is altered;
    - ``"signature"``: one byte of the tree head's signature is flipped;
    - ``"resign"``: another Ed25519 key replaces the ledger's, and re-signs the genuine head.
    """

    PATHS = {"entry": {"/audit/entries"}, "entry+leaf": {"/audit/entries"},
             "proof": {"/audit/proof/inclusion"}, "signature": {"/audit/tree-head"},
             "resign": {"/audit/tree-head", "/audit/public-key"}}

    def __init__(self, app) -> None:
        self.app = app
        self.mode: str | None = None
        self.forger = Ed25519PrivateKey.generate()

    async def __call__(self, scope, receive, send) -> None:
        mode = self.mode
        if scope["type"] != "http" or mode is None or scope["path"] not in self.PATHS[mode]:
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            else:
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        body = b"".join(chunks)
        if start.get("status") == 200:
            body = self._alter(mode, scope["path"], json.loads(body))
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def forger_key_id(self) -> str:
        return hashlib.sha256(self._forger_raw()).hexdigest()

    def _forger_raw(self) -> bytes:
        return self.forger.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def _alter(self, mode: str, path: str, body: dict[str, Any]) -> bytes:
        if mode in ("entry", "entry+leaf"):
            for item in body["data"]:
                entry = item["entry"]
                entry["allowed"] = not entry["allowed"] if isinstance(entry["allowed"], bool) else True
                if mode == "entry+leaf":
                    item["leaf_hash"] = hashlib.sha256(b"\x00" + canonical_json(entry)).hexdigest()
        elif mode == "proof":
            if body["inclusion_path"]:
                first = bytearray.fromhex(body["inclusion_path"][0])
                first[0] ^= 0x01
                body["inclusion_path"][0] = first.hex()
        elif mode == "signature":
            signature = bytearray(base64.b64decode(body["signature"]))
            signature[5] ^= 0x01
            body["signature"] = base64.b64encode(bytes(signature)).decode()
        elif mode == "resign" and path == "/audit/public-key":
            body = {"key_id": self.forger_key_id(), "public_key": base64.b64encode(self._forger_raw()).decode()}
        elif mode == "resign":
            body["key_id"] = self.forger_key_id()
            signed = canonical_json({k: body[k] for k in ("tree_size", "root_hash", "timestamp", "key_id")})
            body["signature"] = base64.b64encode(self.forger.sign(signed)).decode()
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass
class ConsoleStack:
    url: str
    keys: dict[str, str]
    gateway: Gateway
    ledger: Ledger
    crisis: CrisisRegistry
    feed: SecurityFeed
    follower: LedgerFollower
    tamper: Tamper
    home: Path
    active_declaration: str = ""
    revoked_declaration: str = ""

    def call(self, method: str, path: str, who: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.keys[who]}", **kwargs.pop("headers", {})}
        return httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)

    def request(self, who: str, marking: str | None = None, *, model: str = "corridor-tiny",
                flags: str | None = None) -> httpx.Response:
        headers = {"X-Corridor-Marking": marking} if marking else {}
        if flags:
            headers["X-Corridor-Data"] = flags
        if model == "minilm":
            return self.call("POST", "/v1/embeddings", who, headers=headers, json={"model": model, "input": "x"})
        return self.call("POST", "/v1/chat/completions", who, headers=headers,
                         json={"model": model, "messages": [{"role": "user", "content": "x"}]})


def fill(stack: ConsoleStack) -> None:
    """Real traffic: requests allowed at home, refusals, a revoked declaration, and an active
    DE->FR declaration under which German VS-NfD embeddings cross to fr-paris."""
    for round_ in range(5):  # spread over a few seconds, so the charts have a time axis
        for _ in range(round_ % 3 + 1):
            assert stack.request("fr-interior/app", "DR").status_code == 200
            assert stack.request("de-federal-it/app", "VS-NfD").status_code == 200
        assert stack.request("fr-health/app", "PUBLIC", flags="health").status_code == 200
        assert stack.request("eu-agency/app", "PUBLIC").status_code == 200
        assert stack.request("de-health/app", "PUBLIC").status_code == 200
        time.sleep(0.6)
    assert stack.request("fr-interior/app", "SECRET").status_code == 403
    assert stack.request("fr-health/app", "DR").status_code == 403
    assert stack.request("fr-interior/app", "DR", model="no-such-model").status_code in (403, 404)
    assert stack.request("de-federal-it/app", "VS-NfD", model="minilm").status_code == 503

    scope = {"tenants": ["de-federal-it"], "markings": ["VS-NfD"], "models": ["minilm"], "directions": ["DE->FR"]}
    old = stack.call("POST", "/admin/crisis", "FR/operator", json={
        "scope": scope, "reason": "drill: de-frankfurt lost its embedding replica", "valid_for_hours": 2}).json()["id"]
    stack.call("POST", f"/admin/crisis/{old}/approve", "DE/operator")
    stack.call("POST", f"/admin/crisis/{old}/revoke", "DE/operator")
    stack.revoked_declaration = old

    active = stack.call("POST", "/admin/crisis", "FR/operator", json={
        "scope": scope, "reason": "de-frankfurt embedding capacity lost", "valid_for_hours": 12.0}).json()["id"]
    assert stack.call("POST", f"/admin/crisis/{active}/approve", "DE/operator").json()["status"] == "active"
    stack.active_declaration = active
    for _ in range(3):
        crossed = stack.request("de-federal-it/app", "VS-NfD", model="minilm")
        assert crossed.status_code == 200 and crossed.headers["x-corridor-declaration"] == active
        assert stack.request("fr-interior/app", "DR").status_code == 200
        assert stack.request("de-health/app", "PUBLIC").status_code == 200
        time.sleep(0.6)
    stack.follower.poll()


@contextlib.contextmanager
def console_stack(home: Path) -> Iterator[ConsoleStack]:
    policy = Policy.load()
    keys = KeyStore()
    issued = {f"{t}/{role}": keys.issue(role, tenant=t) for t in policy.tenants for role in ("app", "admin")}
    issued["*/auditor"] = keys.issue("auditor", scope=("*",))
    issued["fr-interior/auditor"] = keys.issue("auditor", scope=("fr-interior",))
    for side in ("FR", "DE"):
        issued[f"{side}/operator"] = keys.issue("operator", jurisdiction=side)
    with contextlib.ExitStack() as stack:
        ledger = stack.enter_context(Ledger.open(home))
        feed = SecurityFeed(home / "security-events.jsonl")
        stack.callback(feed.close)
        follower = LedgerFollower(ledger, feed, start_at=0, period_s=0.2).start()
        stack.callback(follower.stop)
        crisis = CrisisRegistry(policy, ledger, home / STORE_FILENAME, tick_s=0.2).start()
        stack.callback(crisis.stop)
        items = []
        for replica, model, pool in REPLICAS:
            url = stack.enter_context(ServerThread(make_stub(pool))).url
            items.append(Endpoint(replica, model, pool, "FR" if pool.startswith("fr-") else "DE",
                                  f"node-{pool}-0", url))
        endpoints = StaticEndpoints(items)
        gateway = Gateway(policy=policy, ledger=ledger, auth=Authenticator(keys),
                          router=Router(policy, endpoints, declarations=crisis.declarations),
                          operator_view=FixtureOperatorView(policy, ledger, items),
                          crisis=crisis, events=feed)
        tamper = Tamper(create_app(gateway))
        server = stack.enter_context(ServerThread(tamper))
        console = ConsoleStack(server.url, issued, gateway, ledger, crisis, feed, follower, tamper, home)
        fill(console)
        yield console
