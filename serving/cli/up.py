"""``corridor up``: the embedded two-site corridor, or one site of it (``--site FR|DE``).

Without ``--site``: FR on ``--port`` and DE on the next port, each its own process with its own
Ray cluster, peered over mutual TLS (:mod:`serving.installation.corridor`). With ``--site``: one
site (its own pools, ledger, keys), and with ``--peer-url`` its link to the other site.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from policies import PolicyError
from serving.autarky import AutarkyError
from serving.config import ConfigError
from serving.installation.settings import UpConfig, corridor_home

console = Console()


def up(
    port: Annotated[int, typer.Option(help="Gateway port (the FR site's; DE takes the next one).")] = 8000,
    host: Annotated[str, typer.Option(help="Gateway address (0.0.0.0 in a container).")] = "127.0.0.1",
    ray_address: Annotated[Optional[str], typer.Option(help="Join this Ray cluster instead of starting one.")] = None,
    autarky: Annotated[bool, typer.Option(help="Autarky mode: only a bundle signed by a listed operator key, "
                                          "pinned model digests, local endpoints, every offline switch.")] = False,
    policy_file: Annotated[Optional[Path], typer.Option("--policy", help="Policy bundle (YAML).")] = None,
    home: Annotated[Optional[Path], typer.Option(help="State directory (default $CORRIDOR_HOME or .corridor/).")] = None,
    config_file: Annotated[Optional[Path], typer.Option(
        "--config", help="Running configuration: operator keys, security feed (default <home>/corridor.yaml).")] = None,
    deployments: Annotated[Optional[Path], typer.Option(
        "--deployments", help="Deployments file (YAML) to place at start; default: the demo set.")] = None,
    site: Annotated[Optional[str], typer.Option(help="Run one site of the corridor: FR or DE.")] = None,
    peer_url: Annotated[Optional[str], typer.Option(help="The other site's peer API, https://HOST:PORT.")] = None,
    peer_port: Annotated[Optional[int], typer.Option(help="This site's peer API port (default: port + 100).")] = None,
    peer_ca: Annotated[Optional[Path], typer.Option(help="The other site's CA certificate (PEM).")] = None,
    identity: Annotated[Optional[Path], typer.Option(
        help="This site's identity folder: site CA, certificate, key (default <home>/identity; created).")] = None,
    peer_gateway_url: Annotated[Optional[str], typer.Option(
        help="The other site's gateway URL, named when a key of the other site is presented here.")] = None,
    database: Annotated[Optional[str], typer.Option(
        envvar="CORRIDOR_DATABASE",
        help="Keep the site's state in this PostgreSQL database (postgresql://…; default: "
             "corridor.yaml's database:, else SQLite in the home). Both sites: one schema each.")] = None,
    gateway_workers: Annotated[int, typer.Option(
        min=0, help="Gateway processes serving each site's port (more than one needs --database); "
                    "0 with --site: the control process alone, the gateway running elsewhere.")] = 1,
    ledger_key: Annotated[Optional[Path], typer.Option(
        help="The ledger's signing key (default <home>/ledger-signing-key.pem; created on first start).")] = None,
    control_port: Annotated[Optional[int], typer.Option(
        help="With --gateway-workers other than 1: the control API's port (default: port + 200).")] = None,
) -> None:
    """Start the embedded corridor (FR and DE sites), or one site with --site."""
    home = home or corridor_home()
    database = _database(database, config_file, home, gateway_workers)
    if site is None:
        if gateway_workers == 0:
            console.print("error: --gateway-workers 0 (the control process alone) needs --site",
                          style="bold red")
            raise typer.Exit(2)
        _corridor(home, host, port, policy_file, autarky, config_file, deployments, database,
                  gateway_workers)
        return
    site = site.upper()
    if site not in ("FR", "DE"):
        console.print(f"error: --site: got {site!r}, want FR or DE", style="bold red", markup=False)
        raise typer.Exit(2)
    peer = None
    if peer_url is not None:
        from serving.federation.sites import PeerConfig, other_site

        if peer_ca is None:
            console.print("error: --peer-url needs --peer-ca (the other site's CA certificate)", style="bold red")
            raise typer.Exit(2)
        peer = PeerConfig(site=site, peer_url=peer_url, peer_ca=peer_ca,
                          identity_dir=identity or home / "identity", listen_host=host,
                          listen_port=peer_port or port + 100, peer_gateway_url=peer_gateway_url)
        console.print(f"site {site}: peer {other_site(site)} at {peer_url}", highlight=False)
    config = UpConfig(home=home, host=host, port=port, ray_address=ray_address, bundle=policy_file,
                      autarky=autarky, config_file=config_file, site=site, peer=peer,
                      deployments=deployments, database=database, gateway_workers=gateway_workers,
                      control_port=control_port, ledger_key=ledger_key)
    _site(config)


def _database(database: str | None, config_file: Path | None, home: Path, workers: int) -> str | None:
    """``--database``, else ``database:`` of the running configuration; several workers need one."""
    from scheduler.database import check_url
    from serving.config import load_run_config

    try:
        database = check_url(database) if database else load_run_config(config_file, home).database
    except (ValueError, ConfigError) as exc:
        console.print(f"error: {exc}", style="bold red", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    if workers != 1 and database is None:
        console.print(f"error: --gateway-workers {workers}: several gateway processes need a shared "
                      f"database; give --database postgresql://USER@HOST/NAME (or database: in "
                      f"corridor.yaml). One process serves with SQLite.", style="bold red",
                      markup=False, highlight=False)
        raise typer.Exit(2)
    return database


def _site(config: UpConfig) -> None:
    from serving.installation.installation import Installation  # Ray and vLLM's helpers: only here

    try:
        installation = Installation(config, console)
    except (ConfigError, PolicyError) as exc:
        console.print(f"error: {exc}", style="bold red", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    try:
        try:
            installation.start()
        except AutarkyError as exc:
            console.print(str(exc), style="bold red", markup=False, highlight=False)
            raise typer.Exit(1) from exc
        console.print()
        for line in installation.summary():
            console.print(f"  {line}", highlight=False)
        if config.site is None:
            console.print(f"\nDemo API keys: {config.home / 'demo-keys.json'}")
            for who in ("fr-interior/app", "de-federal-it/app", "*/auditor"):
                if who in installation.keys:
                    console.print(f"  {who:<20} {installation.keys[who]}", highlight=False)
        base = f"http://{config.host}:{config.port}"
        console.print(f"\n[bold green]Gateway[/] {base}/v1 — Ctrl-C stops everything")
        console.print(f"[bold green]Console[/] {base}/console — sign in with an API key "
                      f"(auditor or operator)", highlight=False)
        installation.serve()
    finally:
        console.print("stopping replicas and Ray …")
        installation.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _corridor(home: Path, host: str, port: int, bundle: Path | None, autarky: bool,
              config_file: Path | None, deployments: Path | None, database: str | None,
              gateway_workers: int) -> None:
    from serving.installation.corridor import SITES, Corridor, CorridorConfig

    config = CorridorConfig(home=home, port=port, host=host, bundle=bundle, autarky=autarky,
                            config_file=config_file, deployments=deployments, database=database,
                            gateway_workers=gateway_workers)
    corridor = Corridor(config, console)
    try:
        corridor.prepare()
    except (ConfigError, PolicyError) as exc:
        console.print(f"error: {exc}", style="bold red", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    # SIGTERM (a service manager's stop) ends the corridor as Ctrl-C does: both sites stopped,
    # not left running without the process that started them.
    signal.signal(signal.SIGTERM, _interrupt)
    corridor.start()
    try:
        if not corridor.wait_ready():
            console.print("error: a site did not come up (its output is above)", style="bold red")
            raise typer.Exit(1)
        console.print(f"\n[bold green]The corridor is up[/] — sites in {home / 'sites.json'}, "
                      f"demo API keys in {home / 'demo-keys.json'}", highlight=False)
        for site in SITES:
            url = config.url_of(site)
            console.print(f"  {site}  gateway {url}/v1   console {url}/console   "
                          f"peer API https://127.0.0.1:{config.peer_port_of(site)} (mutual TLS)", highlight=False)
        for who in ("fr-interior/app", "de-federal-it/app", "*/auditor", "FR/operator", "DE/operator"):
            console.print(f"  {who:<20} {corridor.keys[who]}", highlight=False)
        console.print("Ctrl-C stops both sites", highlight=False)
        code = corridor.wait()
        if code:
            raise typer.Exit(code)
    except KeyboardInterrupt:
        pass
    finally:
        console.print("stopping both sites …")
        corridor.stop()
