"""The Grafana dashboard queries exactly the metrics (and labels) the gateway exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram

from serving.gateway.metrics import GatewayMetrics
from serving.routing.admission import AdmissionQueue
from serving.routing.settings import QueueSettings

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "corridor-gateway.json"
#: Labels the scrape adds (Kubernetes service discovery) or PromQL introduces.
SCRAPE_LABELS = {"namespace", "le"}


def exported() -> dict[str, set[str]]:
    """Sample name → label names, for every metric of the gateway's registry (its own and the
    admission queue's)."""
    out = {}
    queue = AdmissionQueue(QueueSettings(), has_room=lambda e: True, take=lambda e, r: None,
                           give_back=lambda e, r: None)
    for metric in [*vars(GatewayMetrics()).values(), queue.depth, queue.waits, queue.outcomes]:
        if isinstance(metric, Counter):
            out[f"{metric._name}_total"] = set(metric._labelnames)
        elif isinstance(metric, Histogram):
            for suffix in ("_bucket", "_sum", "_count"):
                out[f"{metric._name}{suffix}"] = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
        elif isinstance(metric, Gauge):
            out[metric._name] = set(metric._labelnames)
    return out


def queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"]
            for target in panel.get("targets", [])]


def test_the_dashboard_is_importable_json_with_unique_panel_ids_on_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert {v["name"] for v in dashboard["templating"]["list"]} >= {"datasource", "namespace"}
    for panel in dashboard["panels"]:
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


@pytest.mark.parametrize("title, expr", queries())
def test_every_query_names_exported_metrics_and_their_labels(title, expr) -> None:
    metrics = exported()
    assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
    names = re.findall(r"\bcorridor_[a-z_]+", expr)
    assert names and all(name in metrics for name in names), names
    labels = set().union(*(metrics[name] for name in names)) | SCRAPE_LABELS
    used = {label.strip() for group in re.findall(r"\bby \(([^)]*)\)", expr) for label in group.split(",")}
    used |= set(re.findall(r"([a-z_]+)=~?\"", expr))
    assert used <= labels, used - labels


def test_every_gateway_metric_is_on_the_dashboard() -> None:
    used = {name for _, expr in queries() for name in re.findall(r"\bcorridor_[a-z_]+", expr)}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported()}
    assert families <= {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}


@pytest.mark.parametrize("needle", [
    "sum by (jurisdiction) (rate(corridor_requests_total",
    "sum by (code) (rate(corridor_policy_denials_total",
    "histogram_quantile(0.99, sum by (le) (rate(corridor_gateway_overhead_seconds_bucket",
    "histogram_quantile(0.99, sum by (le) (rate(corridor_time_to_first_token_seconds_bucket",
    "deriv(corridor_ledger_entries",
    "sum by (declaration) (increase(corridor_crossings_total",
    "sum by (tenant, priority) (corridor_queue_depth",
    "histogram_quantile(0.99, sum by (le, priority) (rate(corridor_queue_wait_seconds_bucket",
])
def test_the_dashboard_answers_the_operators_questions(needle) -> None:
    assert any(needle in expr for _, expr in queries())
