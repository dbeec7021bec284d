"""A simulated Corridor cluster for the scheduler's integration tests.

One ``ray.cluster_utils.Cluster`` per test module: a head without labels and
labelled nodes with declared GPUs that do not exist. Also a small real replica
actor that meets :class:`scheduler.ReplicaActor`, test bundles built from
dicts, and ways to ask Ray (not the scheduler) where things are.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ray
import yaml
from ray.cluster_utils import Cluster

from policies import Declaration, Policy, load_bundle
from policies.bundle import JURISDICTION_LABEL, POOL_LABEL

REPO = Path(__file__).resolve().parents[2]

#: The default bundle's pools.
POOLS = {"fr-paris": "FR", "fr-lyon": "FR", "de-frankfurt": "DE", "de-berlin": "DE"}


def labels(pool: str, jurisdiction: str | None = None) -> dict[str, str]:
    """Node labels of the pool convention (jurisdiction default: the pool's)."""
    return {POOL_LABEL: pool, JURISDICTION_LABEL: jurisdiction or POOLS[pool]}


class EchoReplica:
    """A replica actor that serves nothing: it reports where it runs and a fake endpoint."""

    def __init__(self, *, deployment: str, replica_id: str, model: str, pool: str,
                 jurisdiction: str, tensor_parallel_size: int, config: dict[str, Any]) -> None:
        self.replica_id = replica_id
        self.config = config
        self.serving = False
        self.state = "created"

    def describe(self) -> dict[str, Any]:
        context = ray.get_runtime_context()
        group = ray.util.get_current_placement_group()
        return {"node_id": context.get_node_id(), "labels": dict(context.get_node_labels()),
                "endpoint": f"echo://{self.replica_id}" if self.serving else None,
                "state": self.state,
                "placement_group": group.id.hex() if group is not None else None}

    def start(self) -> None:
        self.serving, self.state = True, "ready"

    def stop(self) -> None:
        self.serving, self.state = False, "stopped"

    def lose_server(self) -> None:
        """What VLLMReplica reports when its server died while the actor lives."""
        self.serving, self.state = False, "server-dead"


class ServingReplica(EchoReplica):
    """A replica actor that serves a minimal OpenAI chat endpoint over HTTP from its node, so a
    gateway can route to it (answers name the replica; ``/health`` answers once started)."""

    def describe(self) -> dict[str, Any]:
        found = super().describe()
        found["endpoint"] = self.url if self.serving else None
        return found

    def start(self) -> None:
        import json
        import socket
        import threading

        import uvicorn

        answer = json.dumps({"id": "chatcmpl-replica", "object": "chat.completion", "created": 0,
                             "model": "stub", "system_fingerprint": self.replica_id,
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": "ok"}}],
                             "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                       "total_tokens": 2}}).encode()

        async def app(scope, receive, send):
            if scope["type"] != "http":
                return
            while (await receive()).get("more_body"):
                pass
            status = 200 if scope["path"] in ("/health", "/v1/chat/completions") else 404
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": answer if status == 200 else b"{}"})

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
        while not server.started:
            time.sleep(0.01)
        self.serving = True


class SimulatedCluster:
    """Named nodes of a running ``Cluster``; ``add``/``remove`` change it while tests run."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.nodes: dict[str, Any] = {}

    def add(self, name: str, node_labels: Mapping[str, str], *, gpus: int = 2) -> str:
        """Start a node with these labels and declared GPUs; return its Ray node id."""
        node = self.cluster.add_node(num_cpus=1, num_gpus=gpus, labels=dict(node_labels))
        self.cluster.wait_for_nodes()
        self.nodes[name] = node
        return node.node_id

    def remove(self, name: str) -> str:
        """Stop a node the way it dies in production: its raylet goes away."""
        node = self.nodes.pop(name)
        self.cluster.remove_node(node)
        return node.node_id

    def node_id(self, name: str) -> str:
        return self.nodes[name].node_id


@contextmanager
def simulated_cluster(nodes: Mapping[str, Mapping[str, str]]) -> Iterator[SimulatedCluster]:
    """Head (no labels) plus one node per entry; Ray connected; everything shut down after."""
    saved = os.environ.get("PYTHONPATH")
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), here, saved) if p)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        simulated = SimulatedCluster(cluster)
        for name, node_labels in nodes.items():
            simulated.nodes[name] = cluster.add_node(num_cpus=1, num_gpus=2, labels=dict(node_labels))
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        yield simulated
    finally:
        ray.shutdown()
        cluster.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def ray_labels(node_id: str) -> dict[str, str]:
    """Labels of a node as Ray's node table has them (not the scheduler's bookkeeping)."""
    for entry in ray.nodes():
        if entry["NodeID"] == node_id:
            return dict(entry.get("Labels") or {})
    raise LookupError(f"Ray has no node {node_id}")


def ray_actor(actor_id: str) -> dict[str, Any]:
    """Ray's actor table entry: ``State`` and ``Address.NodeID``."""
    from ray._private.state import actors

    return actors(actor_id=actor_id) or {}


def where(view: Any) -> list[tuple[str, str]]:
    """(pool label, jurisdiction label) of each replica's node, asked of Ray via the actor table."""
    out = []
    for replica in view.replicas:
        node_id = ray_actor(replica.actor_id)["Address"]["NodeID"]
        found = ray_labels(node_id)
        out.append((found.get(POOL_LABEL), found.get(JURISDICTION_LABEL)))
    return out


def wait_for(predicate: Callable[[], Any], timeout_s: float, period_s: float = 0.2) -> Any:
    """Poll until ``predicate()`` is truthy; return it, or raise after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        time.sleep(period_s)


def entries(ledger: Any, **filters: Any) -> list[dict[str, Any]]:
    """Every ledger entry matching ``filters`` (kind, tenant, …), oldest first."""
    out, after = [], None
    while True:
        page = ledger.entries(after=after, limit=1000, **filters)
        out.extend(item["entry"] for item in page["data"])
        if not page["has_more"]:
            return out
        after = page["data"][-1]["index"]


def default_document() -> dict[str, Any]:
    """The shipped default bundle as a dict, to change in one place per test."""
    return yaml.safe_load(Path(REPO, "policies", "bundles", "default.yaml").read_text())


def policy_of(document: Mapping[str, Any]) -> Policy:
    """Validate a bundle document exactly as a file would be, and compile it."""
    text = yaml.safe_dump(copy.deepcopy(dict(document)), sort_keys=False, allow_unicode=True)
    return Policy(load_bundle("test-bundle.yaml", text=text))


def crisis(tenant: str, marking: str, model: str, direction: str, *,
           hours: float = 4.0) -> Declaration:
    """An active, two-person-approved crisis declaration starting now."""
    now = dt.datetime.now(dt.timezone.utc)
    declarer = {"operator": "anne", "jurisdiction": direction[:2]}
    approver = {"operator": "bernd", "jurisdiction": direction[-2:],
                "at": now - dt.timedelta(minutes=1)}
    return Declaration.model_validate({
        "id": f"crisis-{tenant}-{direction}", "declared_by": declarer,
        "reason": "test: the home pools are down",
        "scope": {"tenants": [tenant], "markings": [marking], "models": [model],
                  "directions": [direction]},
        "valid_from": now - dt.timedelta(minutes=5), "valid_until": now + dt.timedelta(hours=hours),
        "approvals": [approver]})


def placement_group_record(group_id: str) -> dict[str, Any]:
    """Ray's GCS record of a placement group: strategy, and per bundle its label selector and node."""
    from ray._private.state import state
    from ray._raylet import PlacementGroupID
    from ray.core.generated import gcs_pb2
    from ray.util import placement_group_table

    raw = state._connect_and_get_accessor().get_placement_group_info(
        PlacementGroupID(bytes.fromhex(group_id)))
    data = gcs_pb2.PlacementGroupTableData.FromString(raw)
    table = placement_group_table()[group_id]
    return {"strategy": table["strategy"], "state": table["state"],
            "bundles": [{"resources": dict(b.unit_resources), "label_selector": dict(b.label_selector),
                         "node_id": b.node_id.hex()} for b in data.bundles]}
