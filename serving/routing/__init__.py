"""Which replica serves a request, and the connections that carry it there.

- :mod:`~serving.routing.router`: live replicas filtered by the rulebook, then ranked;
- :mod:`~serving.routing.scoring`, :mod:`~serving.routing.prefix_index`,
  :mod:`~serving.routing.load`: the scorer plugins, the prefix index, the replicas' load;
- :mod:`~serving.routing.dispatch`: a slot on a replica — at once, after a wait in the
  :mod:`~serving.routing.admission` queue, or once an :mod:`~serving.routing.on_demand`
  replica is up; :mod:`~serving.routing.settings`: their configuration;
- :mod:`~serving.routing.upstream`, :mod:`~serving.routing.http1`: the keep-alive connections
  to the replicas; :mod:`~serving.routing.errors`: what can go wrong on them.

No HTTP server code lives here: the gateway's routes and the batch executor both
route through a :class:`~serving.routing.router.Router` and send through an
:class:`~serving.routing.upstream.UpstreamPool`.
"""

from serving.routing.router import Endpoint, EndpointSource, Route, Router, StaticEndpoints
from serving.routing.upstream import UpstreamBroken, UpstreamPool, UpstreamResponse, UpstreamUnreachable

__all__ = ["Endpoint", "EndpointSource", "Route", "Router", "StaticEndpoints", "UpstreamBroken",
           "UpstreamPool", "UpstreamResponse", "UpstreamUnreachable"]
