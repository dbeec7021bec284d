"""The vLLM replica: the Ray actor the scheduler places, running vLLM's OpenAI server.

It meets :class:`scheduler.binding.ReplicaActor`: the constructor only records
what it was given; ``start()`` checks the model artifact's digest and launches
``python -m vllm.entrypoints.openai.api_server`` on its node as a child
process group under :mod:`serving.replica.guard`; a thread waits for
``/health`` and then publishes the endpoint in ``describe()``; ``stop()`` ends
the whole group (server, engine core, workers). The guard ends the group when
the actor dies, so a killed actor leaves no server behind. Once ready, the same
thread keeps watching: a server that exits, or stops answering ``/health``
:data:`HEALTH_FAILURES` times in a row, while the actor lives, turns the state to
``server-dead`` (endpoint withdrawn, leftovers of its group ended), which the
scheduler's healing replaces.

The same code runs on GPU clusters with the ``gpu`` extra: vLLM then uses the
GPUs Ray assigned (``CUDA_VISIBLE_DEVICES``); with ``tensor_parallel_size > 1``
it runs its workers in the placement group the scheduler created.

``config`` keys (``DeploymentSpec.replica_config``):

``model_path``       local Hugging Face-format model directory (required)
``task``             ``"chat"`` (default) or ``"embedding"`` (vLLM ``--runner pooling``)
``expected_digest``  pinned artifact digest; a mismatch refuses to start
``engine_args``      extra vLLM server arguments, e.g. ``["--max-model-len", "512"]``
``env``              extra environment for the server (e.g. ``VLLM_CPU_KVCACHE_SPACE``)
``ready_timeout_s``  how long to wait for ``/health`` (default 600)
``log_dir``          where the server's output goes (default: a temporary directory)
``host``             address to bind (default 127.0.0.1; ``0.0.0.0`` on real clusters)
``log_stats``        keep vLLM's statistics and its Prometheus metrics (default off)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from serving.loopback import server_port
from serving.models.artifacts import artifact_digest

#: Offline switches for every library the server loads: nothing phones home.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_DO_NOT_TRACK": "1",
    # Ray reports "usage stats disabled" and probes cloud metadata unless told not to.
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
}


#: Seconds between health checks of a ready server, and failed checks in a row that mean dead.
HEALTH_PERIOD_S = 2.0
HEALTH_FAILURES = 3
SERVER_DEAD = "server-dead"


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True




class VLLMReplica:
    """A replica serving one model with vLLM's OpenAI-compatible server."""

    def __init__(self, *, deployment: str, replica_id: str, model: str, pool: str,
                 jurisdiction: str, tensor_parallel_size: int = 1,
                 config: dict[str, Any] | None = None) -> None:
        self.deployment, self.replica_id, self.model = deployment, replica_id, model
        self.pool, self.jurisdiction = pool, jurisdiction
        self.tensor_parallel_size = tensor_parallel_size
        self.config = dict(config or {})
        self.state = "created"
        self.error: str | None = None
        self.digest: str | None = None
        self.endpoint: str | None = None
        self.pgid: int | None = None  # the server's process group
        self.log_path: Path | None = None

    def describe(self) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "labels": dict(context.get_node_labels()),
                "endpoint": self.endpoint, "state": self.state, "error": self.error,
                "digest": self.digest, "model": self.model, "replica_id": self.replica_id,
                "pgid": self.pgid,
                "log": str(self.log_path) if self.log_path else None}

    def start(self) -> None:
        """Verify the artifact, launch the server, and return; readiness comes later."""
        if self.pgid is not None:
            return
        try:
            command, env, host, port = self._command()
        except (FileNotFoundError, ValueError) as exc:
            self.state, self.error = "failed", str(exc)
            return
        log_dir = Path(self.config.get("log_dir") or tempfile.mkdtemp(prefix="corridor-replica-"))
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_path = log_dir / f"{self.replica_id}.log"
        with os.fdopen(os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600),
                       "ab") as log:
            launcher = subprocess.Popen(
                [sys.executable, "-m", "serving.replica.guard", "--watch", str(os.getpid()),
                 "--", *command],
                env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
            launcher.wait(timeout=30)  # returns once the guard has detached
        self.pgid = launcher.pid
        self.state = "starting"
        url = f"http://{self._advertised(host)}:{port}"
        threading.Thread(target=self._wait_ready, args=(url,), daemon=True).start()

    def stop(self) -> None:
        """Stop the server and every process of its group (engine core, workers)."""
        pgid, self.pgid = self.pgid, None
        self.endpoint = None
        self.state = "stopped"
        if pgid is None:
            return
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if not _group_alive(pgid):
                    return
                time.sleep(0.2)

    # -- internals ----------------------------------------------------------

    def _command(self) -> tuple[list[str], dict[str, str], str, int]:
        path = Path(self.config.get("model_path") or "")
        if not path.is_dir():
            raise FileNotFoundError(f"model directory {path} does not exist on this node")
        self.digest = artifact_digest(path)
        expected = self.config.get("expected_digest")
        if expected and expected != self.digest:
            raise ValueError(f"artifact digest mismatch for {self.model}: got {self.digest}, "
                             f"pinned {expected}; refusing to start")
        host = self.config.get("host", "127.0.0.1")
        port = server_port(host)  # vLLM binds it a minute later: outside the ephemeral range
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                   "--model", str(path), "--served-model-name", self.model,
                   "--host", host, "--port", str(port)]
        if not self.config.get("log_stats"):
            command.append("--disable-log-stats")
        if self.config.get("task") == "embedding":
            command += ["--runner", "pooling"]
        if self.tensor_parallel_size > 1:
            command += ["--tensor-parallel-size", str(self.tensor_parallel_size),
                        "--distributed-executor-backend", "ray"]
        command += [str(arg) for arg in self.config.get("engine_args", [])]
        # With statistics on (the gateway reads the load gauges from /metrics), their log
        # line comes once a minute rather than every 10 s.
        env = {**os.environ, **OFFLINE_ENV,
               **({"VLLM_LOG_STATS_INTERVAL": "60"} if self.config.get("log_stats") else {}),
               **{k: str(v) for k, v in self.config.get("env", {}).items()}}
        return command, env, host, port

    @staticmethod
    def _advertised(host: str) -> str:
        if host not in ("0.0.0.0", "::"):
            return host
        import ray

        return ray.util.get_node_ip_address()

    def _wait_ready(self, url: str) -> None:
        timeout = float(self.config.get("ready_timeout_s", 600))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pgid = self.pgid
            if pgid is None:
                return
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        self.endpoint, self.state = url, "ready"
                        self._watch(url, pgid)
                        return
            except OSError:
                if not _group_alive(pgid):
                    self.state = "failed"
                    self.error = f"vLLM server exited; see {self.log_path}"
                    self.pgid = None
                    return
            time.sleep(1.0)
        self.stop()
        self.state = "failed"
        self.error = f"vLLM server not ready within {timeout:g} s"

    def _watch(self, url: str, pgid: int) -> None:
        """While the server is ready: notice it dying inside the live actor (see the module
        docstring). Returns when the server stopped, by :meth:`stop` or by dying."""
        failures = 0
        while self.pgid == pgid:
            time.sleep(HEALTH_PERIOD_S)
            if self.pgid != pgid:
                return
            healthy = _group_alive(pgid)
            if healthy:
                try:
                    with urllib.request.urlopen(url + "/health", timeout=10) as response:
                        healthy = response.status == 200
                except OSError:
                    healthy = False
            failures = 0 if healthy else failures + 1
            if failures >= HEALTH_FAILURES or not _group_alive(pgid):
                self.stop()
                self.state = SERVER_DEAD
                self.error = f"the vLLM server stopped answering; see {self.log_path}"
                return
