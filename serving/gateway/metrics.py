"""Prometheus metrics of the gateway, in a registry of its own (one per app)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    """Requests, denials, gateway overhead vs. upstream latency, TTFT, ledger size."""

    def __init__(self, ledger_size: Callable[[], int] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "corridor_requests", "Inference requests by tenant, model, jurisdiction and status.",
            ["tenant", "model", "jurisdiction", "status"], registry=self.registry)
        self.denials = Counter(
            "corridor_policy_denials", "Requests refused by the policy, by reason code.",
            ["code"], registry=self.registry)
        self.overhead = Histogram(
            "corridor_gateway_overhead_seconds",
            "Time spent in the gateway itself: request in to upstream request out.",
            buckets=_FAST, registry=self.registry)
        self.upstream = Histogram(
            "corridor_upstream_latency_seconds", "Upstream (replica) time to response headers.",
            buckets=_SLOW, registry=self.registry)
        self.ttft = Histogram(
            "corridor_time_to_first_token_seconds",
            "Streaming: request in to first chunk out.", buckets=_SLOW, registry=self.registry)
        self.crossings = Counter(
            "corridor_crossings", "Requests routed across the border under a crisis declaration.",
            ["declaration"], registry=self.registry)
        self.ledger_size = Gauge("corridor_ledger_entries", "Entries in the placement ledger.",
                                 registry=self.registry)
        if ledger_size is not None:
            self.ledger_size.set_function(ledger_size)
