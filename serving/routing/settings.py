"""Routing settings: scorer weights, the prefix index, the admission queue, on-demand replicas.

Part of the running configuration (``corridor.yaml``, see :mod:`serving.config`),
validated as strictly as the rest: an unknown field, an unknown scorer name or a
negative weight is an error naming the path::

    routing:
      weights: {prefix: 3, tokens: 1, queue: 1, kv_cache: 1}
      metrics_poll_s: 0.5
    queue:
      replica_concurrency: 64     # requests in flight per replica before new ones wait
      timeout_s: 30
    on_demand:
      idle_release_s: 300
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The scorers a weight may name (see :mod:`serving.routing.scoring`).
SCORER_NAMES = ("prefix", "tokens", "queue", "kv_cache")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoutingSettings(_Strict):
    """How the router scores the replicas the rulebook allows."""

    weights: dict[str, float] = Field(
        default_factory=lambda: {"prefix": 3.0, "tokens": 1.0, "queue": 1.0, "kv_cache": 1.0},
        description="Weight per scorer; a scorer left out (or weighted 0) is not run.")
    block_chars: int = Field(default=64, ge=1, description="Characters per prefix block.")
    max_blocks: int = Field(default=256, ge=1, description="Leading blocks of a request hashed.")
    index_blocks_per_replica: int = Field(default=31_250, ge=1,
                                          description="Prefix blocks remembered per replica (LRU).")
    metrics_poll_s: float = Field(default=0.5, gt=0, description="Period of /metrics reads.")
    imbalance_slack: float = Field(default=4, ge=0, description=(
        "Requests a replica may hold above the least loaded candidate before its prefix "
        "affinity stops counting (with imbalance_ratio)."))
    imbalance_ratio: float = Field(default=1.5, ge=1, description=(
        "... and times the least loaded candidate's load (both must be exceeded)."))
    output_tokens_guess: int = Field(default=256, ge=0, description=(
        "Tokens assumed to be generated when a request sets no max_tokens."))

    @property
    def reads_engine_metrics(self) -> bool:
        """True when a scorer reads the replicas' ``/metrics`` (``queue`` or ``kv_cache``)."""
        return self.weights.get("queue", 0) > 0 or self.weights.get("kv_cache", 0) > 0

    @field_validator("weights")
    @classmethod
    def _known_scorers(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if name not in SCORER_NAMES:
                raise ValueError(f"unknown scorer {name!r}; known: {', '.join(SCORER_NAMES)}")
            if weight < 0:
                raise ValueError(f"weight of {name!r}: got {weight}, want >= 0")
        return value


class QueueSettings(_Strict):
    """The admission queue: when requests wait, how many, for how long."""

    replica_concurrency: int = Field(default=256, ge=1, description=(
        "Requests in flight per replica from this gateway; beyond it, requests wait."))
    max_waiting: int = Field(default=1024, ge=0, description="Requests waiting, all tenants.")
    max_waiting_per_tenant: int = Field(default=256, ge=0, description="Requests waiting per tenant.")
    timeout_s: float = Field(default=30.0, gt=0, description="Longest wait before a 503.")


class OnDemandSettings(_Strict):
    """Replicas placed when a request needs them (models marked ``on_demand`` in the bundle)."""

    idle_release_s: float = Field(default=300.0, gt=0, description=(
        "An on-demand replica no request has used for this long is released."))
    wait_s: float = Field(default=180.0, gt=0, description=(
        "How long a request waits for an on-demand replica to start."))
    expected_start_s: float = Field(default=90.0, gt=0, description=(
        "Start time assumed before one was measured (decides whether home capacity is in time)."))
    retry_s: float = Field(default=30.0, gt=0, description="Pause after a refused placement.")
