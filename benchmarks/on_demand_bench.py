"""On-demand replicas: first request to first token when no replica is live, beside a bare start.

On a simulated Ray cluster (head + one labelled fr-paris node with a declared GPU),
``corridor-tiny`` is marked ``on_demand`` in the bundle and no replica runs. Two
measurements alternate, each from nothing running:

* **Corridor on demand**: a streaming chat request to the gateway; the time to its
  first token covers the rulebook, the placement through the scheduler (ledger
  entries, Ray actor with its label selector, read-back), the vLLM server's start
  in the replica actor, the endpoint showing up, the wait in the admission queue
  and the request itself. The replica is released once idle (5 s here) before
  the next round.
* **bare vLLM start**: the same vLLM server command the replica runs, started
  directly, polled on ``/health``, then the same streaming request: the
  replica's own start time, with nothing of Corridor in the way.

A first bare start, untimed, fills vLLM's compilation cache for both. Rounds
alternate which goes first.

Run: python benchmarks/on_demand_bench.py [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving.loopback import free_port, wait_http  # noqa: E402

MODEL = "corridor-tiny"
ENGINE_ARGS = ["--max-model-len", "512"]
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Bonjour"}], "max_tokens": 8,
        "stream": True}


def first_token(url: str, headers: dict[str, str], started: float) -> float:
    """Seconds from ``started`` to the first streamed chunk of one chat request at ``url``."""
    with httpx.stream("POST", url + "/v1/chat/completions", json=BODY, headers=headers,
                      timeout=900) as answer:
        if answer.status_code != 200:
            raise RuntimeError(f"HTTP {answer.status_code}: {answer.read().decode()[:300]}")
        for _ in answer.iter_bytes():
            return time.perf_counter() - started
    raise RuntimeError("empty answer")


def bare_start(model_path: Path, log: Path) -> float:
    """The replica's vLLM command started directly: launch to first token, in seconds."""
    from serving.replica.actor import OFFLINE_ENV

    port = free_port()
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_path),
               "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port), *ENGINE_ARGS]
    env = {**os.environ, **OFFLINE_ENV, "VLLM_LOG_STATS_INTERVAL": "60", "VLLM_CPU_KVCACHE_SPACE": "1"}
    started = time.perf_counter()
    server = subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", 900, interval=0.2)
        return first_token(url, {}, started)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import ray
    import uvicorn
    import yaml
    from ray.cluster_utils import Cluster

    from policies import Policy, load_bundle
    from policies.bundle import JURISDICTION_LABEL, POOL_LABEL, default_bundle_path
    from scheduler import Deployments
    from scheduler.ledger import Ledger
    from serving.gateway import Authenticator, Gateway, KeyStore, create_app
    from serving.installation.adapters import DeploymentEndpoints
    from serving.models.demo import build_demo_model
    from serving.provisioning import DeploymentProvisioner
    from serving.replica.actor import OFFLINE_ENV, VLLMReplica
    from serving.routing import Router
    from serving.routing.on_demand import OnDemand
    from serving.routing.settings import OnDemandSettings

    os.environ.update(OFFLINE_ENV)
    work = Path(tempfile.mkdtemp(prefix="corridor-on-demand-bench-"))
    model_path = build_demo_model(work / "models" / MODEL)
    document = yaml.safe_load(default_bundle_path().read_text("utf-8"))
    for model in document["models"]:
        if model["id"] == MODEL:
            model["on_demand"] = True
    policy = Policy(load_bundle("on-demand.yaml", text=yaml.safe_dump(document, allow_unicode=True)))
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved) if p)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=2, num_gpus=1, labels={POOL_LABEL: "fr-paris", JURISDICTION_LABEL: "FR"})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    keys = KeyStore()
    key = keys.issue("app", tenant="fr-interior")
    config = {"model_path": str(model_path), "engine_args": ENGINE_ARGS, "ready_timeout_s": 900,
              "env": {"VLLM_CPU_KVCACHE_SPACE": "1"}, "log_dir": str(work / "logs")}
    ours, bare = [], []
    with Ledger.open(work / "home") as ledger:
        deployments = Deployments(policy, ledger, VLLMReplica).start()
        endpoints = DeploymentEndpoints(deployments).start()
        on_demand = OnDemand(policy, DeploymentProvisioner(deployments, {MODEL: config}),
                             OnDemandSettings(idle_release_s=5, wait_s=900))
        gateway = Gateway(policy=policy, ledger=ledger, auth=Authenticator(keys),
                          router=Router(policy, endpoints), on_demand=on_demand)
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(gateway), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            url = f"http://127.0.0.1:{port}"
            wait_http(url + "/healthz", 60)
            headers = {"Authorization": f"Bearer {key}", "X-Corridor-Marking": "DR"}
            bare_start(model_path, work / "warm-up.log")  # fills vLLM's compile cache for both
            for n in range(args.rounds):
                if n % 2:
                    ours.append(first_token(url, headers, time.perf_counter()))
                    bare.append(bare_start(model_path, work / f"bare-{n}.log"))
                else:
                    bare.append(bare_start(model_path, work / f"bare-{n}.log"))
                    ours.append(first_token(url, headers, time.perf_counter()))
                print(f"round {n + 1}: bare vLLM start to first token {bare[-1]:6.1f} s · Corridor on demand, "
                      f"request to first token {ours[-1]:6.1f} s", flush=True)
                deadline = time.monotonic() + 120
                while deployments.list() and time.monotonic() < deadline:  # released when idle
                    time.sleep(0.5)
                time.sleep(3)
        finally:
            server.should_exit = True
            thread.join(30)
            endpoints.stop()
            deployments.close()
            ray.shutdown()
            cluster.shutdown()
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
    best_ours, best_bare = min(ours), min(bare)
    print(f"\nbest of {args.rounds}: Corridor on demand {best_ours:.1f} s, bare vLLM start {best_bare:.1f} s, "
          f"ratio {best_ours / best_bare:.2f} (placement, Ray actor, endpoint refresh and queue on top "
          f"of the server's own start: {best_ours - best_bare:+.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
