"""Two sites in one process: each its own ledger, keys, crisis registry, gateway and mTLS peer API,
in front of stub upstreams (FR: fr-paris with corridor-tiny and minilm; DE: de-frankfurt with
corridor-tiny only, so German embeddings have no home capacity)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from policies import Policy
from scheduler.crisis import CrisisRegistry
from scheduler.crisis.peering import SiteSigner
from scheduler.ledger import KEY_FILENAME, Ledger, PublicKey
from scheduler.ledger.signing import load_signing_key
from serving.federation.link import PeerLink
from serving.federation.runtime import Federation
from serving.federation.site_ca import ensure_site_identity
from serving.federation.sites import PeerConfig, other_site
from serving.federation.tls import client_context, server_context
from serving.federation.witnessing import Witness
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.gateway.peer_api import create_peer_app
from serving.routing import Endpoint, Router, StaticEndpoints
from stub_upstream import ServerThread, bound_socket, make_stub

ENDPOINTS = {"FR": [("fr-paris", "corridor-tiny"), ("fr-paris", "minilm")],
             "DE": [("de-frankfurt", "corridor-tiny")]}


class SiteServers:
    """A site's public and peer listeners, served together in one thread and event loop."""

    def __init__(self, public: ServerThread, peer: ServerThread) -> None:
        self.public, self.peer = public, peer
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def both() -> None:
            await asyncio.gather(self.public.server.serve(sockets=[self.public.sock]),
                                 self.peer.server.serve(sockets=[self.peer.sock]))

        # The loop `serve_site` uses (uvicorn's choice): under the plain asyncio loop each answer
        # on a kept-alive connection waits ~40 ms for the client's delayed ACK.
        with asyncio.Runner(loop_factory=self.public.server.config.get_loop_factory()) as runner:
            runner.run(both())

    def __enter__(self) -> SiteServers:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not (self.public.server.started and self.peer.server.started):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the site's servers did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.public.server.should_exit = self.peer.server.should_exit = True
        self.thread.join(timeout=10)
        self.public.sock.close()
        self.peer.sock.close()


@dataclass
class Site:
    code: str
    url: str
    gateway: Gateway
    ledger: Ledger
    crisis: CrisisRegistry
    keys: dict[str, str]
    peer_server: ServerThread | None = None
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def headers(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}", **extra}

    def post(self, path: str, who: str, body: dict, **headers: str) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers=self.headers(who, **headers), timeout=30)

    def get(self, path: str, who: str, **params) -> httpx.Response:
        return httpx.get(self.url + path, params=params, headers=self.headers(who), timeout=30)

    def routing(self, decision_id: str) -> list[dict]:
        return [i["entry"] for i in self.ledger.entries(decision_id=decision_id, limit=100)["data"]]


@dataclass
class Corridor:
    sites: dict[str, Site]
    home: Path

    def __getitem__(self, code: str) -> Site:
        return self.sites[code]

    def wait(self, predicate, timeout_s: float = 10.0, what: str = "condition"):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def two_sites(home: Path, policy: Policy | None = None, *, witness_period_s: float = 0.3,
              policies: dict[str, Policy] | None = None) -> Iterator[Corridor]:
    policy = policy or Policy.load()
    # Bound now, listened on later: the sites' configurations name each other's ports.
    peer_sockets = {code: bound_socket() for code in ("FR", "DE")}
    public_sockets = {code: bound_socket() for code in ("FR", "DE")}
    ports = {code: sock.getsockname()[1] for code, sock in peer_sockets.items()}
    public_ports = {code: sock.getsockname()[1] for code, sock in public_sockets.items()}
    identities = {code: ensure_site_identity(home / code / "identity", code) for code in ("FR", "DE")}
    stores = {code: KeyStore(site=code) for code in ("FR", "DE")}
    keys: dict[str, dict[str, str]] = {"FR": {}, "DE": {}}
    for tenant in policy.tenants.values():
        keys[tenant.home][f"{tenant.id}/app"] = stores[tenant.home].issue("app", tenant=tenant.id)
    for code in ("FR", "DE"):
        keys[code][f"{code}/operator"] = stores[code].issue("operator", jurisdiction=code)
    auditor = stores["FR"].issue("auditor", scope=("*",))
    stores["DE"].add(auditor, "auditor", scope=("*",))
    for code in ("FR", "DE"):
        keys[code]["*/auditor"] = auditor
    sites: dict[str, Site] = {}
    with contextlib.ExitStack() as stack:
        for code in ("FR", "DE"):
            peer = other_site(code)
            site_policy = (policies or {}).get(code, policy)
            site_home = home / code
            ledger = stack.enter_context(Ledger.open(site_home))
            config = PeerConfig(site=code, peer_url=f"https://127.0.0.1:{ports[peer]}",
                                peer_ca=identities[peer].ca_cert, identity_dir=home / code / "identity",
                                listen_port=ports[code], witness_period_s=witness_period_s,
                                peer_gateway_url=f"http://127.0.0.1:{public_ports[peer]}")
            link = PeerLink(config.peer_url, client_context(identities[code], peer_ca=identities[peer].ca_cert,
                                                            peer_site=peer))
            federation = Federation(config=config, link=link, own_digest=site_policy.digest,
                                    own_key=PublicKey.model_validate(ledger.public_key()), hello_period_s=0.5)
            key = load_signing_key(site_home / KEY_FILENAME)
            crisis = CrisisRegistry(site_policy, ledger, site_home / "crisis.json", tick_s=0.2,
                                    signer=SiteSigner(code, key, federation.site_keys)).start()
            stack.callback(crisis.stop)
            federation.crisis = crisis
            crisis.subscribe(federation.crisis_changed)
            upstreams = {}
            endpoints = []
            for pool, model in ENDPOINTS[code]:
                if pool not in upstreams:
                    upstreams[pool] = stack.enter_context(ServerThread(make_stub(pool))).url
                endpoints.append(Endpoint(f"{model}@{pool}", model, pool, pool[:2].upper(), f"node-{pool}",
                                          upstreams[pool]))
            gateway = Gateway(policy=site_policy, ledger=ledger, auth=Authenticator(stores[code]),
                              router=Router(site_policy, StaticEndpoints(endpoints),
                                            declarations=crisis.declarations),
                              crisis=crisis, site=code, federation=federation,
                              witness=Witness(federation, ledger, key, site_home / "witness.json"))
            context = server_context(identities[code], peer_ca=identities[peer].ca_cert, peer_site=peer)
            # Both listeners in one event loop, as `corridor up --site` serves them: the peer API
            # uses the gateway's upstream pool, which belongs to that loop.
            servers = stack.enter_context(SiteServers(
                ServerThread(create_app(gateway), sock=public_sockets[code]),
                ServerThread(create_peer_app(gateway), sock=peer_sockets[code], ssl_context=context,
                             lifespan="off")))
            sites[code] = Site(code, servers.public.url, gateway, ledger, crisis, keys[code], servers.peer)
        corridor = Corridor(sites, home)
        corridor.wait(lambda: all(s.gateway.federation.state.reachable for s in sites.values()),
                      what="both sites to say hello")
        yield corridor
