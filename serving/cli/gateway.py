"""``corridor gateway``: one gateway worker of a site whose gateway runs as several processes.

Started by ``corridor up --gateway-workers N`` (which passes it the public port's socket with
``--fd``) or by the gateway Deployment of ``deploy/kuberay`` (which binds ``--host``/``--port``);
it needs the site's database and, for deployments and ``policy apply``, the control process's
URL (:mod:`serving.installation.worker`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from serving.installation.settings import corridor_home

console = Console(stderr=True)


def gateway(
    database: Annotated[str, typer.Option(help="The site's database, postgresql://… "
                                          "(or $CORRIDOR_DATABASE).", envvar="CORRIDOR_DATABASE")],
    home: Annotated[Optional[Path], typer.Option(help="State directory: signing key, site identity "
                                                 "(default $CORRIDOR_HOME or .corridor/).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind (without --fd).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind (without --fd).")] = 8000,
    fd: Annotated[Optional[int], typer.Option(help="Serve this inherited listening socket.")] = None,
    control_url: Annotated[Optional[str], typer.Option(
        help="The control process's API (deployments, policy apply, pools, peer, witness).",
        envvar="CORRIDOR_CONTROL_URL")] = None,
    site: Annotated[Optional[str], typer.Option(help="The site: FR or DE.")] = None,
    policy_file: Annotated[Optional[Path], typer.Option("--policy", help="Policy bundle (YAML).")] = None,
    config_file: Annotated[Optional[Path], typer.Option("--config", help="Running configuration.")] = None,
    peer_url: Annotated[Optional[str], typer.Option(help="The other site's peer API (forwarding).")] = None,
    peer_ca: Annotated[Optional[Path], typer.Option(help="The other site's CA certificate (PEM).")] = None,
    identity: Annotated[Optional[Path], typer.Option(help="This site's identity folder.")] = None,
    peer_gateway_url: Annotated[Optional[str], typer.Option(help="The other site's gateway URL.")] = None,
    ledger_key: Annotated[Optional[Path], typer.Option(
        help="The ledger's signing key, the control process's own (default <home>/ledger-signing-key.pem).")] = None,
) -> None:
    """Serve one gateway worker of a site (no Ray: the control process runs the cluster)."""
    from scheduler.database import DatabaseUnavailable
    from serving.installation.settings import UpConfig
    from serving.installation.worker import Worker, serve_worker

    home = home or corridor_home()
    site = site.upper() if site else None
    if site not in (None, "FR", "DE"):
        console.print(f"error: --site: got {site!r}, want FR or DE", style="bold red", markup=False)
        raise typer.Exit(2)
    peer = None
    if peer_url is not None:
        from serving.federation.sites import PeerConfig

        if peer_ca is None or site is None:
            console.print("error: --peer-url needs --peer-ca and --site", style="bold red")
            raise typer.Exit(2)
        peer = PeerConfig(site=site, peer_url=peer_url, peer_ca=peer_ca,
                          identity_dir=identity or home / "identity", peer_gateway_url=peer_gateway_url)
    try:
        config = UpConfig(home=home, host=host, port=port, bundle=policy_file, config_file=config_file,
                          site=site, peer=peer, database=database, ledger_key=ledger_key)
        worker = Worker(config, control_url).start()
    except ValueError as exc:
        console.print(f"error: {exc}", style="bold red", markup=False, highlight=False)
        raise typer.Exit(2) from exc
    except DatabaseUnavailable as exc:  # a worker starts only with the site's shared state
        console.print(f"error: {exc}", style="bold red", markup=False, highlight=False)
        raise typer.Exit(1) from exc
    serve_worker(worker, fd=fd, host=host, port=port)
