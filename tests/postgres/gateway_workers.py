"""A site's gateway as several worker processes on one port, without Ray: the shared database,
a stub replica published as the control process would publish it, an app and an auditor key.
Used by the worker tests and ``benchmarks/gateway_workers_bench.py``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from serving.installation.control import worker_sockets
from serving.installation.published import ENDPOINTS, POLICY, StatePublisher, endpoints_document
from serving.installation.stores import open_keys, open_site_ledger
from serving.loopback import free_port, wait_http
from serving.routing import Endpoint

ROOT = Path(__file__).resolve().parents[2]
MODEL = "corridor-tiny"


@dataclass
class WorkerSite:
    """N ``corridor gateway`` processes on one port (a socket each, as the control process opens
them), in front of ``upstream``."""

    home: Path
    database: str
    upstream: str
    workers: int = 2
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def bundle(self) -> Path:
        return self.home / "bundle.yaml"

    def prepare(self) -> None:
        """What the control process does before the workers start: the ledger (and its signing
        key), the keys, the published replica and policy. The bundle is the default one with
        quotas no load here reaches (the tests measure serving, not the limits)."""
        import yaml

        from policies import Policy, default_bundle_path

        self.home.mkdir(parents=True, exist_ok=True)
        document = yaml.safe_load(default_bundle_path().read_text("utf-8"))
        for tenant in document["tenants"]:
            tenant.setdefault("quotas", {}).update(requests_per_minute=10**8, tokens_per_minute=10**10)
        self.bundle.write_text(yaml.safe_dump(document, sort_keys=False), "utf-8")
        open_site_ledger(self.home, self.database).close()
        store = open_keys(self.home, None, self.database)
        self.keys = {"app": store.issue("app", tenant="fr-interior"),
                     "admin": store.issue("admin", tenant="fr-interior"),
                     "auditor": store.issue("auditor", scope=("*",))}
        publisher = StatePublisher(self.database)
        publisher.publish(ENDPOINTS, endpoints_document(
            [Endpoint("stub-paris", MODEL, "fr-paris", "FR", "node-stub", self.upstream)]))
        publisher.publish(POLICY, {"digest": Policy.load(self.bundle).digest, "model_digests": {}})
        publisher.close()

    def start(self) -> WorkerSite:
        self.prepare()
        self._sockets = worker_sockets("127.0.0.1", self.port, self.workers)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.processes = [subprocess.Popen(self._command(sock.fileno()), pass_fds=(sock.fileno(),), env=env,
                                           cwd=ROOT) for sock in self._sockets]
        wait_http(self.url + "/healthz", 60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # every worker up: each answers its own /readyz
            if all(p.poll() is None for p in self.processes) and self._all_ready():
                return self
            time.sleep(0.2)
        raise RuntimeError("the gateway workers did not become ready")

    def _command(self, fd: int) -> list[str]:
        return [sys.executable, "-m", "serving.cli", "gateway", "--home", str(self.home),
                "--database", self.database, "--fd", str(fd), "--policy", str(self.bundle)]

    def _all_ready(self) -> bool:
        import httpx

        try:
            answers = [httpx.get(self.url + "/readyz", timeout=2).status_code for _ in range(4 * self.workers)]
        except httpx.HTTPError:
            return False
        return all(code == 200 for code in answers)

    def kill(self, index: int) -> int:
        """SIGKILL worker ``index`` and close its socket, as the control process does when one dies."""
        pid = self.processes[index].pid
        os.kill(pid, signal.SIGKILL)
        self.processes[index].wait()
        self._sockets[index].close()
        return pid

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for sock in getattr(self, "_sockets", ()):
            sock.close()
