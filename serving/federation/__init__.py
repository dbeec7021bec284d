"""The corridor between two sites: what one site needs to trust, peer with and check the other.

- :mod:`~serving.federation.identity`: the site CA and site certificate,
  loaded and checked (``cryptography`` only);
- :mod:`~serving.federation.site_ca`: creating them on first start;
- :mod:`~serving.federation.tls`: the mutual-TLS contexts of the peer link
  and the peer-certificate checks in the handshake (``ssl``);
- :mod:`~serving.federation.sites`: this site, its peer, ``sites.json``;
- :mod:`~serving.federation.link`: the mutual-TLS link to the peer's API;
- :mod:`~serving.federation.runtime`: what this site knows of its peer, the hello and
  crisis-step loops;
- :mod:`~serving.federation.witnessing`: countersigning the peer's tree heads.

The signed crisis steps live with the crisis registry (:mod:`scheduler.crisis.steps`,
:mod:`scheduler.crisis.declaration_rule`); the checks of a peer's ledger with the ledger
(:mod:`scheduler.ledger.witness`, :mod:`scheduler.ledger.checkpoint`). The peer API's routes
are HTTP surface: :mod:`serving.gateway.peer_api`.

This package imports nothing on import: no Ray, no FastAPI, no vLLM.
"""
