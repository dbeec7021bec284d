"""A gateway on loopback in front of stub upstreams, with keys for every role."""

from __future__ import annotations

import datetime as dt

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from policies import Policy
from scheduler.ledger import Ledger
from serving.gateway import Authenticator, Gateway, KeyStore, create_app
from serving.routing import Endpoint, Router, StaticEndpoints
from stub_upstream import ServerThread, make_stub


@dataclass
class Stack:
    url: str
    keys: dict[str, str]
    gateway: Gateway
    ledger: Ledger
    endpoints: StaticEndpoints
    upstreams: dict[str, str]  # pool id -> stub URL


def endpoint(pool: str, url: str, model: str = "corridor-tiny", replica: str | None = None) -> Endpoint:
    jurisdiction = "FR" if pool.startswith("fr-") else "DE"
    return Endpoint(replica or f"{model}@{pool}", model, pool, jurisdiction, f"node-{pool}", url)


def active_declaration(id: str, tenant: str, marking: str, *, reason: str = "drill",
                       model: str = "corridor-tiny") -> dict:
    """An FR→DE declaration for ``tenant``'s ``marking`` on ``model``, declared by FR and approved
    by DE, active from an hour ago for two hours (JSON types, as a bundle holds it)."""
    now = dt.datetime.now(dt.timezone.utc)
    return {"id": id, "declared_by": {"operator": "fr-ops", "jurisdiction": "FR"}, "reason": reason,
            "scope": {"tenants": [tenant], "markings": [marking], "models": [model],
                      "directions": ["FR->DE"]},
            "valid_from": (now - dt.timedelta(hours=1)).isoformat(),
            "valid_until": (now + dt.timedelta(hours=2)).isoformat(),
            "approvals": [{"operator": "de-ops", "jurisdiction": "DE",
                           "at": (now - dt.timedelta(minutes=30)).isoformat()}]}


@contextlib.contextmanager
def gateway_stack(home, *, pools=("fr-paris", "de-frankfurt"), max_body_bytes=64 * 1024,
                  policy: Policy | None = None, apps=None, database: str | None = None,
                  **gateway_args) -> Iterator[Stack]:
    """``apps`` maps a pool to the ASGI app its stub runs (default: an instant stub);
    ``gateway_args`` go to :class:`Gateway` (e.g. ``queue=``, ``on_demand=``)."""
    policy = policy or Policy.load()
    keys = KeyStore()
    issued = {f"{t}/{role}": keys.issue(role, tenant=t) for t in policy.tenants for role in ("app", "admin")}
    issued["*/auditor"] = keys.issue("auditor", scope=("*",))
    issued["fr-interior/auditor"] = keys.issue("auditor", scope=("fr-interior",))
    issued["FR/operator"] = keys.issue("operator", jurisdiction="FR")
    with contextlib.ExitStack() as stack:
        ledger = stack.enter_context(Ledger.open(home, database=database))
        apps = apps or {}
        upstreams = {pool: stack.enter_context(ServerThread(apps.get(pool) or make_stub(pool))).url
                     for pool in pools}
        endpoints = StaticEndpoints([endpoint(pool, url) for pool, url in upstreams.items()])
        gateway = Gateway(policy=policy, ledger=ledger, auth=Authenticator(keys),
                          router=Router(policy, endpoints), max_body_bytes=max_body_bytes,
                          **gateway_args)
        server = stack.enter_context(ServerThread(create_app(gateway)))
        yield Stack(server.url, issued, gateway, ledger, endpoints, upstreams)
