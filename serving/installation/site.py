"""One site of the corridor, wired: its peer link and loops, its crisis step signer, its witness,
and its two listeners (the public gateway, and the peer API over mutual TLS) in one event loop."""

from __future__ import annotations

import asyncio

import uvicorn
from fastapi import FastAPI

from policies import Policy
from scheduler.crisis.peering import SiteSigner
from scheduler.ledger import Ledger, LedgerEntryDraft, PublicKey
from scheduler.ledger.signing import load_signing_key
from serving.federation.identity import SiteIdentity
from serving.federation.link import PeerLink
from serving.federation.runtime import Federation
from serving.federation.site_ca import ensure_site_identity
from serving.federation.tls import client_context, server_context
from serving.federation.witnessing import WITNESS_FILENAME, Witness
from serving.gateway import Gateway
from serving.gateway.peer_api import create_peer_app
from serving.installation.settings import UpConfig


def identity_of(config: UpConfig) -> SiteIdentity:
    """This site's identity (created on first start in the configured folder)."""
    assert config.peer is not None and config.site is not None
    return ensure_site_identity(config.peer.identity_dir, config.site)


def federation_of(config: UpConfig, policy: Policy, ledger: Ledger) -> Federation | None:
    """The peer link and its loops, or None for an installation without a peer."""
    peer = config.peer
    if peer is None:
        return None
    context = client_context(identity_of(config), peer_ca=peer.peer_ca, peer_site=peer.peer)

    def mismatch(peer_digest: str, own_digest: str) -> None:
        """The peer loads another bundle: a security entry (the feed reports it); no forwarding."""
        ledger.append(LedgerEntryDraft(
            kind="security", allowed=False, reasons=["PEER_POLICY_MISMATCH"], policy_digest=own_digest,
            detail={"event": "peer_policy_mismatch", "site": peer.peer, "peer_digest": peer_digest,
                    "message": f"the peer site runs policy {peer_digest}, this site {own_digest}; "
                               f"forwarding stops until both load the same joint bundle"}))

    return Federation(config=peer, link=PeerLink(peer.peer_url, context), own_digest=policy.digest,
                      own_key=PublicKey.model_validate(ledger.public_key()), on_mismatch=mismatch)


def signer_of(config: UpConfig, federation: Federation | None) -> SiteSigner | None:
    """The crisis step signer of this site (its ledger key), when it has a peer."""
    if federation is None or config.site is None:
        return None
    return SiteSigner(config.site, load_signing_key(config.ledger_key_path), federation.site_keys)


def witness_of(config: UpConfig, federation: Federation | None, ledger: Ledger) -> Witness | None:
    """The witness of the peer's ledger, when this site has a peer."""
    if federation is None:
        return None
    return Witness(federation, ledger, load_signing_key(config.ledger_key_path),
                   config.home / WITNESS_FILENAME)


def serve_site(app: FastAPI, gateway: Gateway, config: UpConfig, log_level: str = "warning") -> None:
    """Serve ``app`` on the gateway port and, with a peer, the peer API on its port, until Ctrl-C.

    One event loop for both: the peer API serves forwarded requests through the gateway's
    upstream pool, which belongs to that loop. The loop is the one uvicorn would pick itself
    (uvloop here): under the plain asyncio loop every answer on a kept-alive connection waited
    ~40 ms for the client's delayed ACK.
    """
    servers = [uvicorn.Server(uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                                             access_log=False))]
    peer = config.peer
    if peer is not None:
        context = server_context(identity_of(config), peer_ca=peer.peer_ca, peer_site=peer.peer)
        servers.append(uvicorn.Server(uvicorn.Config(
            create_peer_app(gateway), host=peer.listen_host, port=peer.listen_port, log_level=log_level,
            access_log=False, lifespan="off", ssl_context_factory=lambda config, default: context)))

    async def run() -> None:
        await asyncio.gather(*(server.serve() for server in servers))

    with asyncio.Runner(loop_factory=servers[0].config.get_loop_factory()) as runner:
        runner.run(run())
