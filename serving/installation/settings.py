"""What ``corridor up`` starts: the home directory, ports, models, limits, and the deployments file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path



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
    ready_timeout_s: float = 900.0
    #: The deployments file placed at start; default the demo set
    #: (``serving/installation/deployments.yaml``).
    deployments: Path | None = None
