"""``corridor up``: start the embedded default (or join a Ray cluster) and serve the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
import uvicorn
from rich.console import Console

from serving.embedded import Installation, UpConfig, corridor_home

console = Console()


def up(
    port: Annotated[int, typer.Option(help="Gateway port on 127.0.0.1.")] = 8000,
    ray_address: Annotated[Optional[str], typer.Option(help="Join this Ray cluster instead of starting one.")] = None,
    autarky: Annotated[bool, typer.Option(help="Refuse unpinned models and unsigned bundles.")] = False,
    policy_file: Annotated[Optional[Path], typer.Option("--policy", help="Policy bundle (YAML).")] = None,
    home: Annotated[Optional[Path], typer.Option(help="State directory (default $CORRIDOR_HOME or .corridor/).")] = None,
) -> None:
    """Start the embedded default: local Ray cluster, FR and DE pools, demo model, gateway."""
    if autarky:
        console.print("[yellow]--autarky is not implemented yet[/]: models are loaded from local "
                      "directories and every library's offline switch is set, but bundle "
                      "signatures and pinned digests are not enforced yet.")
    config = UpConfig(home=home or corridor_home(), port=port, ray_address=ray_address,
                      bundle=policy_file)
    installation = Installation(config, console)
    try:
        installation.start()
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
