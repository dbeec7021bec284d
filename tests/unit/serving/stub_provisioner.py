"""A provisioner for the unit tier: a "replica" it places is a stub upstream on a free port,
added to the stack's endpoints; batch replicas and on-demand replicas use it alike."""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway_stack import endpoint
from serving.provisioning import ProvisionRefused
from stub_upstream import ServerThread, make_stub


class StubProvisioner:
    """Places a replica as a stub upstream in ``pool`` after ``delay`` s, named
    ``<prefix>-<n>`` (replica ``<prefix>-<n>-r1``), or refuses while ``refuse`` is set.
    ``ref["stack"]`` is the stack whose endpoints it changes (set once the stack runs);
    ``app(pool)`` makes the stub's ASGI app."""

    def __init__(self, ref: dict, pool: str, *, prefix: str = "replica", delay: float = 0.0,
                 refuse: bool = False, app: Callable[[str], object] = make_stub) -> None:
        self.ref, self.pool, self.prefix, self.delay, self.refuse = ref, pool, prefix, delay, refuse
        self.app = app
        self.servers: dict[str, ServerThread] = {}
        self.placed: list[str] = []
        self.released: list[str] = []

    def provision(self, owner, workload):
        if self.refuse:
            raise ProvisionRefused("0/4 pools: 2 RESIDENCY, 1 MISSING_ACCREDITATION, 1 NO_CAPACITY")
        time.sleep(self.delay)
        name = f"{self.prefix}-{len(self.placed) + 1}"
        server = self.servers[name] = ServerThread(self.app(self.pool)).__enter__()
        self.ref["stack"].endpoints.items.append(endpoint(self.pool, server.url, workload.model,
                                                          f"{name}-r1"))
        self.placed.append(name)
        return name

    def release(self, name):
        stack = self.ref["stack"]
        stack.endpoints.items = [e for e in stack.endpoints.items if not e.replica_id.startswith(name)]
        self.servers.pop(name).__exit__()
        self.released.append(name)
