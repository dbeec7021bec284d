"""The corridor between two sites: what one site needs to trust, peer with and check the other.

- :mod:`~serving.federation.identity`: the site CA and site certificate,
  loaded and checked (``cryptography`` only);
- :mod:`~serving.federation.site_ca`: creating them on first start;
- :mod:`~serving.federation.tls`: the mutual-TLS contexts of the peer link
  and the peer-certificate checks in the handshake (``ssl``);
- :mod:`~serving.federation.signed_steps`: crisis declaration steps signed by
  the acting site's ledger key;
- :mod:`~serving.federation.declaration_rule`: the rule that makes a
  declaration active.

Witnessing the peer's ledger lives with the ledger, in
:mod:`scheduler.ledger.witness` and :mod:`scheduler.ledger.checkpoint`.

This package imports nothing on import: no Ray, no FastAPI, no vLLM.
"""
