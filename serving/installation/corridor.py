"""The embedded corridor: two sites on one machine, each its own process, peered over mutual TLS.

``corridor up`` (no ``--site``) prepares, then starts and watches, one ``corridor up --site FR``
and one ``corridor up --site DE`` process: each has its own Ray cluster with only its own pools,
its own gateway (FR on ``--port``, DE on the next port), ledger and signing key, key store,
crisis registry and site certificate; each trusts only the other's site CA on its peer API
(gateway port + 100). Prepared here, before either starts:

- ``$CORRIDOR_HOME/sites/FR`` and ``…/DE``: each site's state folder, its site identity (CA,
  certificate, key: :func:`serving.federation.site_ca.ensure_site_identity`) and API keys;
- the demo model, built once into ``$CORRIDOR_HOME/models`` (both sites read it);
- ``demo-keys.json`` (``"<tenant>/<role>"`` at the tenant's home site, ``"*/auditor"`` valid at
  both, ``"FR/operator"`` and ``"DE/operator"`` at their own site) and ``sites.json``.

With ``--database`` both sites keep their state in that PostgreSQL database, each in its own
schema (``corridor_fr``, ``corridor_de``), and each serves its port with ``--gateway-workers``
processes (:mod:`serving.installation.control`).

Ctrl-C stops both sites (each stops its replicas and Ray) and then this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from policies import Policy
from serving.federation.site_ca import ensure_site_identity
from scheduler.database import ensure_schema, site_url
from serving.federation.sites import other_site, write_sites
from serving.gateway.auth import KeyStore
from serving.installation.stores import open_keys
from serving.models.demo import MODEL_ID as DEMO_MODEL, build_demo_model

SITES = ("FR", "DE")
PEER_PORT_OFFSET = 100


@dataclass
class CorridorConfig:
    """What the embedded corridor starts: the FR gateway on ``port``, DE on ``port + 1``."""

    home: Path
    port: int = 8000
    host: str = "127.0.0.1"
    bundle: Path | None = None
    autarky: bool = False
    config_file: Path | None = None
    deployments: Path | None = None  # each site places those of its own tenants
    ready_timeout_s: float = 1200.0
    #: One PostgreSQL database for both sites, each in its own schema (``corridor_fr``,
    #: ``corridor_de``: :func:`scheduler.database.site_url`); None: SQLite in each site's folder.
    database: str | None = None
    gateway_workers: int = 1

    def database_of(self, site: str) -> str | None:
        return site_url(self.database, site) if self.database else None

    def site_home(self, site: str) -> Path:
        return self.home / "sites" / site

    def port_of(self, site: str) -> int:
        return self.port + SITES.index(site)

    def url_of(self, site: str) -> str:
        return f"http://{self.host}:{self.port_of(site)}"

    def peer_port_of(self, site: str) -> int:
        return self.port_of(site) + PEER_PORT_OFFSET


class Corridor:
    """Two site processes and what they share (see the module docstring)."""

    def __init__(self, config: CorridorConfig, console: Console | None = None) -> None:
        self.config = config
        self.console = console or Console(stderr=True)
        self.policy = Policy.load(config.bundle)
        self.processes: dict[str, subprocess.Popen] = {}
        self.keys: dict[str, str] = {}

    # -- preparing -------------------------------------------------------------

    def prepare(self) -> None:
        """Site folders, identities, keys, ``sites.json`` and the demo model."""
        home = self.config.home
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        for site in SITES:
            self.config.site_home(site).mkdir(parents=True, exist_ok=True)
            ensure_site_identity(self.config.site_home(site) / "identity", site)
        with self.console.status("[bold]demo model[/] …"):
            build_demo_model(home / "models" / DEMO_MODEL)
        self.keys = self._keys()
        write_sites(home, {site: {"url": self.config.url_of(site), "home": str(self.config.site_home(site)),
                                  "peer_url": f"https://127.0.0.1:{self.config.peer_port_of(site)}"}
                           for site in SITES})

    def _keys(self) -> dict[str, str]:
        """Every demo key at its home site; the auditor's at both. Reused while they still work."""
        path = self.config.home / "demo-keys.json"
        for site in SITES:
            if self.config.database_of(site):
                ensure_schema(self.config.database_of(site))
        stores = {site: open_keys(self.config.site_home(site), site, self.config.database_of(site))
                  for site in SITES}
        if path.exists():
            existing = json.loads(path.read_text("utf-8"))
            if existing and all(self._valid(stores, who, key) for who, key in existing.items()):
                return existing
        keys: dict[str, str] = {}
        for tenant in self.policy.tenants.values():
            for role in ("app", "admin"):
                keys[f"{tenant.id}/{role}"] = stores[tenant.home].issue(role, tenant=tenant.id)
        for site in SITES:
            keys[f"{site}/operator"] = stores[site].issue("operator", jurisdiction=site)
        auditor = keys["*/auditor"] = stores["FR"].issue("auditor", scope=("*",))
        stores["DE"].add(auditor, "auditor", scope=("*",))
        for site in SITES:  # each site's own subset, which it reuses at start
            own = {who: key for who, key in keys.items() if self._valid(stores, who, key, site)}
            _write_private(self.config.site_home(site) / "demo-keys.json", own)
        _write_private(path, keys)
        return keys

    @staticmethod
    def _valid(stores: dict[str, KeyStore], who: str, key: str, only: str | None = None) -> bool:
        return any(store.authenticate(key) for site, store in stores.items() if only in (None, site))

    # -- running ---------------------------------------------------------------

    def start(self) -> None:
        """Start both site processes; their output is shown prefixed with the site."""
        for site in SITES:
            self.processes[site] = subprocess.Popen(
                self._command(site), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env={**os.environ, "CORRIDOR_MODELS": str(self.config.home / "models")},
                start_new_session=True)
            threading.Thread(target=self._echo, args=(site,), daemon=True).start()

    def _command(self, site: str) -> list[str]:
        peer = other_site(site)
        command = [sys.executable, "-m", "serving.cli", "up", "--site", site,
                   "--home", str(self.config.site_home(site)), "--host", self.config.host,
                   "--port", str(self.config.port_of(site)),
                   "--peer-port", str(self.config.peer_port_of(site)),
                   "--peer-url", f"https://127.0.0.1:{self.config.peer_port_of(peer)}",
                   "--peer-ca", str(self.config.site_home(peer) / "identity" / "site-ca.pem"),
                   "--peer-gateway-url", self.config.url_of(peer)]
        if self.config.bundle:
            command += ["--policy", str(self.config.bundle)]
        if self.config.autarky:
            command.append("--autarky")
        if self.config.config_file:
            command += ["--config", str(self.config.config_file)]
        if self.config.deployments:
            command += ["--deployments", str(self.config.deployments)]
        database = self.config.database_of(site)
        if database:
            command += ["--database", database, "--gateway-workers", str(self.config.gateway_workers)]
        return command

    def _echo(self, site: str) -> None:
        stream = self.processes[site].stdout
        assert stream is not None
        for raw in iter(stream.readline, b""):
            print(f"[{site}] {raw.decode('utf-8', 'replace').rstrip()}", flush=True)

    def wait_ready(self) -> bool:
        """True once both gateways answer ``/readyz`` 200; False if a site exits or time runs out."""
        deadline = time.monotonic() + self.config.ready_timeout_s
        waiting = set(SITES)
        while waiting and time.monotonic() < deadline:
            for site in list(waiting):
                if self.processes[site].poll() is not None:
                    return False
                try:
                    with urllib.request.urlopen(self.config.url_of(site) + "/readyz", timeout=2) as answer:
                        if answer.status == 200:
                            waiting.discard(site)
                except OSError:
                    pass
            time.sleep(2.0)
        return not waiting

    def wait(self) -> int:
        """Block until both sites have exited; return the first non-zero status.

        A site that exits alone leaves the other serving: each site is autarkic on its own (its
        home traffic goes on; requests that need the gone peer get 503 ``peer_unavailable``).
        """
        reported: dict[str, int] = {}
        while len(reported) < len(self.processes):
            for site, process in self.processes.items():
                code = process.poll()
                if code is not None and site not in reported:
                    reported[site] = code
                    self.console.print(f"site {site} stopped (status {code}); "
                                       f"{', '.join(s for s in self.processes if s not in reported) or 'none'} "
                                       f"still serving", highlight=False)
            time.sleep(0.5)
        return next((code for code in reported.values() if code), 0)

    def stop(self, timeout_s: float = 90.0) -> None:
        """SIGINT both sites (each stops replicas and Ray), then SIGKILL whatever is left."""
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _write_private(path: Path, value: dict[str, str]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(value, handle, indent=2)
