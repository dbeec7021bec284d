"""The corridor between two sites: what one site needs to trust, peer with and check the other.

- :mod:`~serving.federation.identity`: the site CA, the site certificate and
  the mutual-TLS contexts of the peer link (``cryptography`` and ``ssl`` only);
- :mod:`~serving.federation.signed_steps`: crisis declaration steps signed by
  the acting site's ledger key, and the rule that makes a declaration active.

Witnessing the peer's ledger lives with the ledger, in
:mod:`scheduler.ledger.witness` and :mod:`scheduler.ledger.checkpoint`.

This package imports nothing on import: no Ray, no FastAPI, no vLLM.
"""
