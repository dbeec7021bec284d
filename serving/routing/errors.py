"""What can go wrong between the gateway and a replica, in the routing room's own words::

    Exception
    ├── UpstreamUnreachable   no response head: the caller may retry on another replica
    ├── UpstreamBroken        the body broke off: too late to retry, bytes may be out
    └── NoSlot                the request got no replica slot; nothing was sent upstream
        ├── NoLiveReplica     503: allowed, but no allowed replica is live and none is coming
        ├── QueueFull         429: the tenant's share of the admission queue (or the queue) is full
        ├── QueueTimeout      503: no slot freed before the request's deadline
        └── ClientGone        the client disconnected while its request waited

Both the plain-HTTP proxy client (:mod:`serving.routing.http1`) and the aiohttp pool
(:mod:`serving.routing.upstream`) raise the first two, translated from their libraries'
errors. The dispatch (:mod:`serving.routing.dispatch`) and the admission queue raise the
others; the gateway answers them through :func:`serving.gateway.errors.from_domain`, with
``Retry-After: retry_after``. The caller of a 429 or 503 retries after that many seconds.
"""

from __future__ import annotations


class UpstreamUnreachable(Exception):
    """No response from the replica (connection refused, reset, or timed out before headers)."""


class UpstreamBroken(Exception):
    """The replica failed while its response body was being read."""


class NoSlot(Exception):
    """No replica slot for the request: ``status`` is the HTTP status the gateway answers,
    ``code`` the OpenAI error code, ``retry_after`` the seconds after which to retry."""

    status = 503
    code = "no_slot"
    reason = "NO_SLOT"  # the ledger's reason code

    def __init__(self, message: str, *, retry_after: int = 5, code: str | None = None) -> None:
        super().__init__(message)
        self.message, self.retry_after, self.param = message, retry_after, None
        if code is not None:
            self.code = code


class NoLiveReplica(NoSlot):
    """The policy allows the request but no allowed replica is live, and none is coming;
    ``placement_refused`` says why an on-demand replica could not be placed, if one was asked."""

    code, reason = "no_replica_available", "NO_LIVE_REPLICA"

    def __init__(self, message: str, *, placement_refused: str | None = None,
                 retry_after: int = 5) -> None:
        super().__init__(message, retry_after=retry_after)
        self.placement_refused = placement_refused


class QueueFull(NoSlot):
    """The tenant already has its share of waiting requests, or the queue is full and the
    tenant holds its share (``code`` says which); retry later."""

    status, code, reason = 429, "queue_full", "QUEUE_FULL"


class QueueTimeout(NoSlot):
    """No replica slot became free within the request's deadline; retry later."""

    code, reason = "queue_timeout", "QUEUE_TIMEOUT"


class ClientGone(NoSlot):
    """The client disconnected while its request waited; nothing was sent upstream."""

    code, reason = "client_gone", "CLIENT_GONE"
