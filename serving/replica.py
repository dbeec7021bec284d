"""The vLLM replica: the Ray actor the scheduler places, running vLLM's OpenAI server.

It meets :class:`scheduler.binding.ReplicaActor`: the constructor only records
what it was given; ``start()`` checks the model artifact's digest and launches
``python -m vllm.entrypoints.openai.api_server`` on its node as a child
process; a thread waits for ``/health`` and then publishes the endpoint in
``describe()``; ``stop()`` ends the server and its engine processes. The child
is tied to the actor's life (``PR_SET_PDEATHSIG``), so a killed actor leaves
no server behind.

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
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from serving.models.artifacts import artifact_digest

#: Offline switches for every library the server loads: nothing phones home.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "VLLM_DO_NOT_TRACK": "1",
}


#: Runs the server under a shell that leads its process group: when the actor dies the
#: shell gets SIGTERM (PR_SET_PDEATHSIG) and passes it to the whole group, engine
#: processes included, then SIGKILLs whatever is left after 5 s.
_GROUP_GUARD = ('trap \'trap "" TERM INT; kill -TERM 0; sleep 5; kill -KILL 0\' TERM INT; '
                '"$@" & wait $!')


def _die_with_parent() -> None:
    """In the child, before exec: receive SIGTERM when the actor process dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


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
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def describe(self) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "labels": dict(context.get_node_labels()),
                "endpoint": self.endpoint, "state": self.state, "error": self.error,
                "digest": self.digest, "model": self.model, "replica_id": self.replica_id,
                "pid": self.process.pid if self.process else None,
                "log": str(self.log_path) if self.log_path else None}

    def start(self) -> None:
        """Verify the artifact, launch the server, and return; readiness comes later."""
        if self.process is not None:
            return
        try:
            command, env, host, port = self._command()
        except (FileNotFoundError, ValueError) as exc:
            self.state, self.error = "failed", str(exc)
            return
        log_dir = Path(self.config.get("log_dir") or tempfile.mkdtemp(prefix="corridor-replica-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.replica_id}.log"
        log = self.log_path.open("ab")
        guarded = ["/bin/sh", "-c", _GROUP_GUARD, "corridor-replica", *command]
        self.process = subprocess.Popen(guarded, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
                                        start_new_session=True)
        log.close()
        self.state = "starting"
        url = f"http://{self._advertised(host)}:{port}"
        threading.Thread(target=self._wait_ready, args=(url,), daemon=True).start()

    def stop(self) -> None:
        """Stop the server and every process of its session (engine core, workers)."""
        process, self.process = self.process, None
        self.endpoint = None
        self.state = "stopped"
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

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
        port = _free_port(host)
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server",
                   "--model", str(path), "--served-model-name", self.model,
                   "--host", host, "--port", str(port), "--disable-log-stats"]
        if self.config.get("task") == "embedding":
            command += ["--runner", "pooling"]
        if self.tensor_parallel_size > 1:
            command += ["--tensor-parallel-size", str(self.tensor_parallel_size),
                        "--distributed-executor-backend", "ray"]
        command += [str(arg) for arg in self.config.get("engine_args", [])]
        env = {**os.environ, **OFFLINE_ENV,
               **{k: str(v) for k, v in self.config.get("env", {}).items()}}
        return command, env, host, port

    @staticmethod
    def _advertised(host: str) -> str:
        if host not in ("0.0.0.0", "::"):
            return host
        import ray

        return ray.util.get_node_ip_address()

    def _wait_ready(self, url: str) -> None:
        deadline = time.monotonic() + float(self.config.get("ready_timeout_s", 600))
        while time.monotonic() < deadline:
            process = self.process
            if process is None:
                return
            if process.poll() is not None:
                self.state = "failed"
                self.error = f"vLLM server exited with code {process.returncode}; see {self.log_path}"
                return
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        self.endpoint, self.state = url, "ready"
                        return
            except OSError:
                pass
            time.sleep(1.0)
        self.state = "failed"
        self.error = f"vLLM server not ready within {self.config.get('ready_timeout_s', 600)} s"
        self.stop()
        self.state = "failed"
