"""``corridor up``: the embedded default installation.

Today it prints the plan: the gateway, the replicas and the local Ray cluster
come with the scheduler and serving work (see the README's status section).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

from policies import Policy, Workload

console = Console()


def up(
    port: Annotated[int, typer.Option(help="Gateway port on 127.0.0.1.")] = 8000,
    ray_address: Annotated[Optional[str], typer.Option(help="Join this Ray cluster instead of starting one.")] = None,
    autarky: Annotated[bool, typer.Option(help="Refuse unpinned models and unsigned bundles.")] = False,
) -> None:
    """Start the embedded default: local Ray cluster, FR and DE pools, demo model, gateway."""
    policy = Policy.load()
    console.print(f"[bold]Corridor[/] — policy {policy.bundle.name} {policy.digest}", highlight=False)
    where = ray_address or "a local Ray cluster with one labelled node per pool"
    console.print(f"Ray: {where}")
    for pool in policy.bundle.pools:
        console.print(f"  pool {pool.id:<13} {pool.jurisdiction}  {pool.gpu.count}× {pool.gpu.type}  "
                      f"labels {pool.node_selector}", highlight=False)
    plan = [("corridor-tiny", "fr-interior", "DR"), ("corridor-tiny", "de-federal-it", "VS-NfD"),
            ("minilm", "eu-agency", "PUBLIC")]
    for model, tenant, marking in plan:
        evaluation = policy.decide_all(Workload.create(tenant, marking, kind="replica", model=model))
        pools = ", ".join(d.pool for d in evaluation.allowed) or "nowhere"
        console.print(f"  replica {model} for {tenant} ({marking}) may be placed on: {pools}")
    console.print(f"Gateway: http://127.0.0.1:{port} (autarky {'on' if autarky else 'off'})")
    console.print("[yellow]Not started yet:[/] placement on Ray and the gateway arrive with the "
                  "scheduler and serving milestones; this prints the plan only.")
