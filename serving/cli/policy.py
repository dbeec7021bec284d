"""``corridor policy check|explain``: validate a bundle, explain a workload against every pool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from policies import BundleError, Policy, PolicyError, Workload, default_bundle_path, load_bundle

app = typer.Typer(help="Validate policy bundles and explain decisions.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True, soft_wrap=True)

PolicyOption = Annotated[
    Optional[Path],
    typer.Option("--policy", "-p", help="Policy bundle (YAML); default: the shipped default bundle."),
]


@app.command()
def check(file: Annotated[Path, typer.Argument(help="Policy bundle (YAML) to validate.")]) -> None:
    """Validate a bundle: print its digest and a summary, or every problem (exit 1)."""
    try:
        bundle = load_bundle(file)
    except BundleError as exc:
        errors.print(f"[bold red]{file}: {len(exc.issues)} problem(s)[/]")
        for issue in exc.issues:
            errors.print(f"  {issue}", markup=False, highlight=False)
        raise typer.Exit(1) from exc
    console.print(f"[bold green]valid[/] {bundle.name} {bundle.version}")
    console.print(f"digest {bundle.digest()}", highlight=False)
    console.print(
        f"{len(bundle.pools)} pools, {len(bundle.tenants)} tenants, {len(bundle.models)} models, "
        f"{len(bundle.requirements)} requirement rules, "
        f"{len(bundle.equivalences.markings)} marking equivalences, "
        f"{len(bundle.declarations)} declarations; autarky {'on' if bundle.settings.autarky else 'off'}"
    )


@app.command()
def explain(
    tenant: Annotated[str, typer.Option(help="Tenant id, e.g. fr-interior.")],
    marking: Annotated[Optional[str], typer.Option(help="Marking; default: the tenant's default.")] = None,
    data: Annotated[str, typer.Option(help="Data flags, comma-separated: health,personal,sensitive.")] = "",
    model: Annotated[Optional[str], typer.Option(help="Model id; omitted: model rules are skipped.")] = None,
    policy_file: PolicyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object instead of a table.")] = False,
) -> None:
    """Explain where a workload may run: every pool, allowed or denied, with the reasons."""
    try:
        policy = Policy.load(policy_file or default_bundle_path())
        if marking is None:
            known = policy.tenants.get(tenant)
            marking = known.default_marking if known else "PUBLIC"
        workload = Workload.create(tenant, marking, data_flags=data, model=model)
    except PolicyError as exc:
        errors.print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    evaluation = policy.decide_all(workload)
    if as_json:
        typer.echo(json.dumps(evaluation.to_json(), ensure_ascii=False, indent=2))
        return
    sources = {rule.id: rule.source for rule in policy.bundle.requirements}
    table = Table(title=f"{tenant} · {workload.marking.id}"
                  f"{' · ' + ','.join(sorted(workload.data_flags)) if workload.data_flags else ''}"
                  f"{' · ' + model if model else ''}")
    for column in ("pool", "jurisdiction", "decision", "reasons"):
        table.add_column(column)
    for decision in evaluation.decisions:
        verdict = "[green]allowed[/]" if decision.allowed else "[red]denied[/]"
        if decision.declaration:
            verdict += f" (declaration {decision.declaration})"
        reasons = "\n".join(f"[bold]{r.code}[/] ({r.rule}): {r.message}" for r in decision.reasons)
        table.add_row(decision.pool, decision.jurisdiction or "?", verdict, reasons or "—")
    console.print(table)
    console.print(evaluation.summary(), highlight=False)
    fired = sorted({r.rule for d in evaluation.decisions for r in d.reasons if r.rule in sources})
    for rule in fired:
        console.print(f"[dim]{rule}: {sources[rule]}[/]", highlight=False)
    console.print(f"[dim]policy {policy.digest}[/]", highlight=False)
