"""``corridor up --ray-address`` against a real ``ray start`` cluster from ``deploy/local/``.

The script starts a head and one labelled worker per pool as separate
``ray start`` processes; the Installation joins that cluster (no vLLM: no
demo deployments), reads the pools from the nodes' labels, and a small real
actor is placed by the scheduler on it. Where each replica landed is asked
of Ray and tied back to the very ``ray start`` that started its node (its
raylet's session). The cluster is stopped by the script, and nothing of it
may remain.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from fastapi.testclient import TestClient
from rich.console import Console

from policies.bundle import JURISDICTION_LABEL, POOL_LABEL
from scheduler import Audience, Binder, DeploymentSpec, Deployments
from serving.installation.installation import Installation
from serving.installation.settings import UpConfig

from scheduler_cluster import POOLS, EchoReplica, entries, ray_actor

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "deploy" / "local" / "ray_cluster.py"


def _script_module():
    spec = importlib.util.spec_from_file_location("corridor_local_ray_cluster", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


local = _script_module()


def run_script(*args: str, timeout: float) -> subprocess.CompletedProcess:
    # Workers of the `ray start` nodes import the test actor from this directory.
    paths = [str(REPO), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def cluster() -> Iterator:
    directory = Path(tempfile.mkdtemp(prefix="cr-", dir="/tmp"))
    try:
        started = run_script("start", "--dir", str(directory), timeout=120)
        assert started.returncode == 0, started.stdout + started.stderr
        state = local.ClusterState.load(directory)
        yield state
        stopped = run_script("stop", "--dir", str(directory), timeout=60)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert local.live_processes(state) == [], "processes of the stopped cluster remain"
    finally:
        run_script("stop", "--dir", str(directory), timeout=60)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def installation(cluster, tmp_path_factory) -> Iterator[Installation]:
    home = tmp_path_factory.mktemp("home")
    (home / "no-deployments.yaml").write_text("deployments: []\n")
    config = UpConfig(home=home, ray_address=cluster.address, deployments=home / "no-deployments.yaml")
    running = Installation(config, Console(file=io.StringIO())).start()
    try:
        yield running
    finally:
        running.stop()


def node_of_ray_start(state, name: str) -> str:
    """The Ray node id of the raylet that the script's ``ray start`` for ``name`` launched."""
    (record,) = [n for n in state.nodes if n.name == name]
    table = local._processes()
    sockets = {cmd.split("--raylet_socket_name=")[1].split()[0]
               for pid, (_, sid, cmd) in table.items() if sid == record.session and "--raylet_socket_name=" in cmd}
    (socket_name,) = sockets
    (node,) = [n for n in ray.nodes() if n["Alive"] and n["RayletSocketName"] == socket_name]
    return node["NodeID"]


def test_the_script_starts_one_ray_start_process_per_pool_with_its_labels(cluster) -> None:
    assert [n.name for n in cluster.nodes] == ["head", *POOLS]
    assert len({n.session for n in cluster.nodes}) == len(cluster.nodes)
    for record in cluster.nodes[1:]:
        assert record.labels == {POOL_LABEL: record.name, JURISDICTION_LABEL: POOLS[record.name]}
        assert record.gpus == 2


def test_the_installation_reads_the_pools_from_the_labels_of_the_ray_start_nodes(cluster, installation) -> None:
    snapshot = installation.deployments.inventory.refresh()
    for pool, jurisdiction in POOLS.items():
        state = snapshot.pools[pool]
        assert [n.node_id for n in state.nodes] == [node_of_ray_start(cluster, pool)]
        assert (state.jurisdiction, state.gpus_total) == (jurisdiction, 2.0)
    assert list(snapshot.unpooled) == [node_of_ray_start(cluster, "head")]
    assert not snapshot.quarantined

    client = TestClient(installation.app())
    answer = client.get("/admin/pools", headers={"Authorization": f"Bearer {installation.keys['FR/operator']}"})
    assert answer.status_code == 200, answer.text
    listed = {p["id"]: [n["node_id"] for n in p["nodes"]] for p in answer.json()["pools"]}
    assert listed["fr-paris"] == [node_of_ray_start(cluster, "fr-paris")]


LANDINGS = {
    "DR of the French interior ministry lands on the node `ray start` labelled fr-paris":
        (Audience("fr-interior", "DR"), "fr-paris"),
    "VS-NfD of the German federal IT provider lands on the node `ray start` labelled de-frankfurt":
        (Audience("de-federal-it", "VS-NfD"), "de-frankfurt"),
}


@pytest.mark.parametrize("audience, pool", LANDINGS.values(), ids=LANDINGS.keys())
def test_replicas_land_on_the_labelled_ray_start_node(cluster, installation, audience, pool) -> None:
    scheduler = Deployments(installation.policy, installation.ledger, EchoReplica, binder=Binder(timeout_s=30))
    try:
        view = scheduler.deploy(DeploymentSpec(f"echo-{pool}", "corridor-tiny", [audience]))
        (replica,) = view.replicas
        landed = ray_actor(replica.actor_id)["Address"]["NodeID"]
        assert landed == node_of_ray_start(cluster, pool)
        assert (replica.pool, replica.node_id) == (pool, landed)
        (entry,) = [e for e in entries(installation.ledger, kind="placement") if e["tenant"] == audience.tenant]
        assert entry["allowed"] is True and (entry["pool"], entry["node_id"]) == (pool, landed)
    finally:
        scheduler.close()
