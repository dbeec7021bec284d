"""The sovereign gateway, the HTTP surface of a site: OpenAI-compatible inference admitted by
the rulebook, the Batch API, and the auditor, operator and crisis APIs.

- :mod:`~serving.gateway.app`: :func:`create_app`, error handlers, health and metrics;
- :mod:`~serving.gateway.service`: :class:`Gateway`, what every handler shares;
- :mod:`~serving.gateway.auth`, :mod:`~serving.gateway.claims`, :mod:`~serving.gateway.clients`,
  :mod:`~serving.gateway.limits`, :mod:`~serving.gateway.token_quota`: who calls, from where,
  and how much;
- :mod:`~serving.gateway.requests`, :mod:`~serving.gateway.protocol`,
  :mod:`~serving.gateway.uploads`: reading input; :mod:`~serving.gateway.errors`,
  :mod:`~serving.gateway.boundary`: answering errors; :mod:`~serving.gateway.sse`: relaying
  streams; :mod:`~serving.gateway.openapi`: the schema as the API behaves;
- :mod:`~serving.gateway.keys`: API key records and the key file every worker shares;
- one routes module per API: :mod:`~serving.gateway.openai_api`, :mod:`~serving.gateway.batch_api`,
  :mod:`~serving.gateway.audit_api`, :mod:`~serving.gateway.admin_api`,
  :mod:`~serving.gateway.crisis_api`, :mod:`~serving.gateway.deployments_api`,
  :mod:`~serving.gateway.keys_api`, :mod:`~serving.gateway.policy_api`; the peer API (another
  listener, mutual TLS): :mod:`~serving.gateway.peer_api`, with :mod:`~serving.gateway.forwarding`
  and :mod:`~serving.gateway.proxy` (the proxy shared by local and forwarded requests);
  :mod:`~serving.gateway.spillage`: the marking banner guard.

Build one with :func:`create_app` around a :class:`Gateway`; which replica serves a request is
:mod:`serving.routing`'s business.
"""

from serving.gateway.app import create_app
from serving.gateway.auth import Authenticator, KeyStore, Principal
from serving.gateway.service import Gateway

__all__ = ["Authenticator", "Gateway", "KeyStore", "Principal", "create_app"]
