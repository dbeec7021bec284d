"""What can go wrong between the gateway and a replica, in the routing room's own words::

    Exception
    ├── UpstreamUnreachable   no response head: the caller may retry on another replica
    └── UpstreamBroken        the body broke off: too late to retry, bytes may be out

Both the plain-HTTP proxy client (:mod:`serving.routing.http1`) and the aiohttp pool
(:mod:`serving.routing.upstream`) raise these, translated from their libraries' errors.
"""


class UpstreamUnreachable(Exception):
    """No response from the replica (connection refused, reset, or timed out before headers)."""


class UpstreamBroken(Exception):
    """The replica failed while its response body was being read."""
