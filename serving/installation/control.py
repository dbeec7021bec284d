"""A site's control process when its gateway runs as several processes (``--gateway-workers N``).

The control process is today's site minus the public port: Ray, deployments, healing,
autoscaling, the batch executor, the peer loops (hello, crisis steps, witnessing) and the peer
API. It opens one listening socket per worker on the public port (``SO_REUSEPORT``) and starts N
gateway workers (:mod:`serving.installation.worker`), each inheriting its own: the kernel
spreads new connections evenly over the sockets (one shared socket lets whichever worker is
idle take most of the long-lived connections). When a worker dies the control process closes its
socket at once, so new connections go to the live workers only (those queued on the dead one are
refused, and the client retries), and starts another worker on a new socket (backing off when
they keep dying). If the control process itself dies, the workers keep serving from the sockets
they hold.

What the workers need of the control plane goes through the site's database
(:class:`ControlPublisher`, :mod:`serving.installation.published`). The operations only the
control process can do (deployments, ``policy apply``, pools, the peer state, the witness) it
serves on a loopback control port (``UpConfig.control_port``, default the public port + 200),
to which the workers pass those requests on.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from scheduler.crisis import CrisisRegistry
from scheduler.current_policy import CurrentPolicy
from scheduler.periodic import Periodic
from serving.federation.runtime import Federation
from serving.gateway import Gateway
from serving.installation.published import (ENDPOINTS, PEER, POLICY, Outage, StatePublisher,
                                            endpoints_document)
from serving.installation.settings import UpConfig
from serving.installation.site import serve_site
from serving.routing import EndpointSource

log = logging.getLogger(__name__)

CONTROL_PORT_OFFSET = 200


class ControlPublisher:
    """Publishes what the workers need (live endpoints, the policy digest, served model digests,
    the peer's state) every ``period_s``, writing only what changed; takes the workers' crisis
    steps (:meth:`CrisisRegistry.refresh`) so the peer loop sends them and deployments heal."""

    def __init__(self, url: str, endpoints: EndpointSource, current: CurrentPolicy,
                 model_digests: dict[str, str], federation: Federation | None,
                 crisis: CrisisRegistry | None = None, period_s: float = 0.5) -> None:
        self.publisher = StatePublisher(url)
        self.endpoints, self.current, self.model_digests = endpoints, current, model_digests
        self.federation, self.crisis = federation, crisis
        self._outage = Outage("publishing the control state")
        self._loop = Periodic(lambda: self._outage.run(self.publish), period_s,
                              "corridor-control-publisher", log, "publishing the control state failed")

    def publish(self) -> None:
        self.publisher.publish(ENDPOINTS, endpoints_document(self.endpoints.endpoints()))
        self.publisher.publish(POLICY, {"digest": self.current.policy.digest,
                                        "model_digests": dict(self.model_digests)})
        if self.federation is not None:
            state = self.federation.state
            self.publisher.publish(PEER, {
                "reachable": state.reachable, "policy_digest": state.policy_digest, "halted": state.halted,
                "public_key": state.public_key.model_dump() if state.public_key is not None else None})
        if self.crisis is not None:
            self.crisis.refresh()

    def start(self) -> ControlPublisher:
        self._outage.run(self.publish)
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()
        self.publisher.close()


def listening_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A listening socket on ``host:port``, inheritable by a worker; with ``reuse_port``, one of
    several on the same port among which the kernel spreads new connections."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def worker_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """One listening socket per worker on ``host:port`` (``SO_REUSEPORT``); all or none."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sockets.append(listening_socket(host, port, reuse_port=True))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def control_url(config: UpConfig) -> str:
    return f"http://127.0.0.1:{config.control_port or config.port + CONTROL_PORT_OFFSET}"


def worker_command(config: UpConfig, fd: int) -> list[str]:
    """``corridor gateway`` for one worker of this site, serving the inherited socket ``fd``."""
    assert config.database is not None
    command = [sys.executable, "-m", "serving.cli", "gateway", "--home", str(config.home),
               "--database", config.database, "--fd", str(fd), "--control-url", control_url(config)]
    if config.site:
        command += ["--site", config.site]
    if config.bundle:
        command += ["--policy", str(config.bundle)]
    if config.config_file:
        command += ["--config", str(config.config_file)]
    if config.ledger_key:
        command += ["--ledger-key", str(config.ledger_key)]
    peer = config.peer
    if peer is not None:
        command += ["--peer-url", peer.peer_url, "--peer-ca", str(peer.peer_ca),
                    "--identity", str(peer.identity_dir)]
        if peer.peer_gateway_url:
            command += ["--peer-gateway-url", peer.peer_gateway_url]
    return command


class WorkerSupervisor:
    """Keeps ``count`` worker processes running, each on its own listening socket from
    ``open_socket`` (``command(fd)`` starts one on the inherited ``fd``). A worker that exits has
    its socket closed at once — no connection waits on a socket nobody accepts on — and another
    is started on a new socket, after 1 s doubling to 30 s while they keep exiting within a
    minute of their start."""

    def __init__(self, command: Callable[[int], list[str]], open_socket: Callable[[], socket.socket],
                 count: int) -> None:
        self.command, self.open_socket, self.count = command, open_socket, count
        self.processes: list[subprocess.Popen] = []
        self.sockets: list[socket.socket] = []
        self._started: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self, slot: int) -> None:
        sock = self.open_socket()
        process = subprocess.Popen(self.command(sock.fileno()), pass_fds=(sock.fileno(),))
        self._started[process.pid] = time.monotonic()
        if slot < len(self.processes):
            self.processes[slot], self.sockets[slot] = process, sock
        else:
            self.processes.append(process)
            self.sockets.append(sock)

    def start(self) -> WorkerSupervisor:
        for slot in range(self.count):
            self._spawn(slot)
        self._thread = threading.Thread(target=self._watch, name="corridor-workers", daemon=True)
        self._thread.start()
        return self

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.poll() is None]

    def _watch(self) -> None:
        delay = 1.0
        while not self._stop.wait(0.5):
            for slot, process in enumerate(self.processes):
                code = process.poll()
                if code is None:
                    continue
                self.sockets[slot].close()  # the kernel stops handing it connections
                lived = time.monotonic() - self._started.pop(process.pid, 0.0)
                log.warning("gateway worker %d exited (status %s) after %.0f s; starting another",
                            process.pid, code, lived)
                delay = 1.0 if lived > 60 else min(delay * 2, 30.0)
                if self._stop.wait(delay):
                    return
                try:
                    self._spawn(slot)
                except OSError:
                    log.exception("could not start a gateway worker; trying again")

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM every worker (they finish their requests), SIGKILL those still there."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for sock in self.sockets:
            sock.close()


def serve_control(app: FastAPI, gateway: Gateway, config: UpConfig, log_level: str = "warning") -> None:
    """The control process's serving, until Ctrl-C: N workers on the public port, the control app
    on the loopback control port, the peer API (with a peer). With 0 workers (Kubernetes, where
    the gateway Deployment serves the port) the control app listens on ``config.host``."""
    port = config.control_port or config.port + CONTROL_PORT_OFFSET
    if config.gateway_workers == 0:
        print(f"control API on {config.host}:{port} (the gateway workers run elsewhere)", flush=True)
        serve_site(app, gateway, dataclasses.replace(config, port=port), log_level)
        return
    workers = WorkerSupervisor(lambda fd: worker_command(config, fd),
                               lambda: listening_socket(config.host, config.port, reuse_port=True),
                               config.gateway_workers).start()
    print(f"gateway workers {', '.join(map(str, workers.pids()))} on {config.host}:{config.port}; "
          f"control API on 127.0.0.1:{port}", flush=True)
    try:
        serve_site(app, gateway, dataclasses.replace(config, host="127.0.0.1", port=port), log_level)
    finally:
        workers.stop()
