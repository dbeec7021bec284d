"""What ``corridor up`` starts: the home directory, ports, models, limits, and the deployments file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from policies import Policy, Pool
from serving.federation.sites import PeerConfig


def corridor_home() -> Path:
    """``$CORRIDOR_HOME``, default ``.corridor/`` in the working directory."""
    return Path(os.environ.get("CORRIDOR_HOME", ".corridor")).resolve()


@dataclass
class UpConfig:
    """What ``corridor up`` starts, and with which limits."""

    home: Path = field(default_factory=corridor_home)
    host: str = "127.0.0.1"
    port: int = 8000
    ray_address: str | None = None
    #: Address the replicas' vLLM servers bind: 127.0.0.1 in the embedded cluster, 0.0.0.0
    #: (advertised as the node's address) when joining ``ray_address``, where they run elsewhere.
    replica_host: str | None = None
    #: Where the demo model is built or found prebuilt (the images): ``$CORRIDOR_MODELS``,
    #: default ``<home>/models``. On a real cluster the path must be the same on every node.
    models: Path | None = None
    bundle: Path | None = None
    #: Autarky mode (also on when the bundle's ``settings.autarky`` is): see ``serving.autarky``.
    autarky: bool = False
    #: The running configuration (operator keys, security feed); default ``<home>/corridor.yaml``.
    config_file: Path | None = None
    gpus_per_node: int = 2
    kv_cache_gib: int = 1
    max_model_len: int = 512
    #: vLLM's own statistics and Prometheus metrics on each replica's /metrics (prefix-cache
    #: hits among them). Also on whenever a routing scorer reads them (``queue``, ``kv_cache``
    #: weighted above 0 in ``corridor.yaml``, the default); they cost a little CPU.
    engine_metrics: bool = False
    ready_timeout_s: float = 900.0
    #: The deployments file placed at start; default the demo set
    #: (``serving/installation/deployments.yaml``).
    deployments: Path | None = None
    #: One site of the corridor (``FR``/``DE``): its own pools only, and its peer link. None: one
    #: installation holding every pool of the bundle (tests, and single-operator setups).
    site: str | None = None
    peer: PeerConfig | None = None
    #: The site's shared database (``postgresql://…``): ledger, batch store, keys, crisis
    #: declarations, bundles and limits, shared by every gateway process of the site. None: SQLite
    #: and files in ``home``, one gateway process (see ``scheduler.database``).
    database: str | None = None
    #: Gateway processes serving the site's port (more than one needs ``database``). 0: the
    #: control process alone (Kubernetes: the gateway Deployment's pods serve the port), its
    #: control API on ``host``:``control_port``.
    gateway_workers: int = 1
    #: With several gateway processes: the control process's loopback port, to which the workers
    #: pass deployments, ``policy apply``, pools and the peer state (default: port + 200).
    control_port: int | None = None
    #: The ledger's signing key (default ``<home>/ledger-signing-key.pem``, created on first
    #: start). Every process of a site signs with the same key: on Kubernetes, a Secret.
    ledger_key: Path | None = None

    @property
    def ledger_key_path(self) -> Path:
        from scheduler.ledger.signing import KEY_FILENAME

        return self.ledger_key or self.home / KEY_FILENAME

    def __post_init__(self) -> None:
        if self.gateway_workers < 0:
            raise ValueError(f"gateway_workers: got {self.gateway_workers}, want 0 or more")
        if self.gateway_workers != 1 and self.database is None:
            raise ValueError(f"{self.gateway_workers} gateway workers need a shared database: give "
                             f"--database postgresql://… (or database: in corridor.yaml); one "
                             f"process serves with SQLite")


def own_pools(site: str | None, policy: Policy) -> list[Pool]:
    """The pools a site's own Ray cluster holds: those of its jurisdiction (every pool without a site)."""
    return [pool for pool in policy.bundle.pools if site in (None, pool.jurisdiction)]


def serves_here(site: str | None, policy: Policy, audiences) -> bool:
    """At a site, a deployment serves the tenants whose home it is (its first audience's)."""
    if site is None:
        return True
    tenant = policy.tenants.get(audiences[0].tenant) if audiences else None
    return tenant is not None and tenant.home == site
