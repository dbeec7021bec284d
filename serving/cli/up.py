"""``corridor up``: start the embedded default (or join a Ray cluster) and serve the gateway."""

from __future__ import annotations

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
    port: Annotated[int, typer.Option(help="Gateway port.")] = 8000,
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
) -> None:
    """Start the embedded default: local Ray cluster, FR and DE pools, demo model, gateway."""
    import uvicorn  # the server, Ray and vLLM's helpers load only for this command

    from serving.installation.installation import Installation

    config = UpConfig(home=home or corridor_home(), host=host, port=port, ray_address=ray_address,
                      bundle=policy_file, autarky=autarky, config_file=config_file,
                      deployments=deployments)
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
        console.print(f"\nDemo API keys: {config.home / 'demo-keys.json'}")
        for who in ("fr-interior/app", "de-federal-it/app", "*/auditor"):
            console.print(f"  {who:<20} {installation.keys[who]}", highlight=False)
        console.print(f"\n[bold green]Gateway[/] http://{config.host}:{config.port}/v1 — Ctrl-C stops everything")
        uvicorn.run(installation.app(), host=config.host, port=config.port, log_level="warning",
                    access_log=False)
    finally:
        console.print("stopping replicas and Ray …")
        installation.stop()
