"""``corridor deploy list|apply|scale|remove``: deployments of a running installation.

Talks to the deployments API (:mod:`serving.gateway.deployments_api`) as an
operator (``--as FR``) or a tenant admin (``--as fr-interior/admin``); see
:mod:`serving.cli.gateway_client` for ``--url``, ``--key``, ``--as``, ``--site``::

    corridor deploy apply my-deployments.yaml --as FR --dry-run   # the plan: intended pools or the tally
    corridor deploy apply my-deployments.yaml --as FR             # create, update (rolling), scale
    corridor deploy list --as FR
    corridor deploy scale interior-small 0 --as FR
    corridor deploy remove interior-small --as FR

The file is validated here first, as strictly as on the gateway (an unknown
field is an error naming file, path and problem).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from policies import BundleError
from serving.cli.gateway_client import (AsOption, HomeOption, JsonOption, KeyOption, SiteOption,
                                        Target, UrlOption, die, echo_json)
from serving.deployments_file import load_deployments

app = typer.Typer(help="Deploy, scale and remove models on a running installation.",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
out = Console(highlight=False, soft_wrap=True)


def _step_line(step: dict[str, Any]) -> str:
    action, name = step["action"], step["name"]
    counts = f"{step['replicas_from']} → {step['replicas_to']} replicas"
    if action == "remove":
        counts = f"{step['replicas_from']} → 0 replicas"
    where = ""
    if step.get("pools"):
        where = " on " + ", ".join(step["pools"])
    if step.get("refusal"):
        where = f" — nowhere: {step['refusal']}"
    changed = f" ({', '.join(step['changes'])} changed; one replica at a time)" if step.get("changes") else ""
    status = "" if step["status"] == "planned" else f"  [{step['status']}]"
    error = f"  error: {step['error']}" if step.get("error") else ""
    return f"{action:<9} {name}: {counts}{changed}{where}{status}{error}"


@app.command()
def apply(
    file: Annotated[Path, typer.Argument(help="Deployments file (YAML).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    prune: Annotated[bool, typer.Option("--prune", help="Also remove declared deployments the file "
                                        "does not list (that you may manage).")] = False,
    url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, site: SiteOption = None,
    home: HomeOption = None, as_json: JsonOption = False,
) -> None:
    """Bring the running deployments to FILE: create, update (rolling), scale, and with --prune remove."""
    try:
        declared = load_deployments(file)
    except BundleError as exc:
        raise die(str(exc), code=1) from exc
    target = Target(url=url, key=key, as_=as_, site=site, home=home)
    body = {"deployments": [d.model_dump(mode="json") for d in declared.deployments], "prune": prune}
    answer = target.call("POST", "/admin/deployments/apply", body=body,
                         params={"dry_run": "true"} if dry_run else None)
    if as_json:
        echo_json(answer)
        return
    out.print("plan (dry run, nothing changed):" if dry_run else "applied:")
    for step in answer["steps"]:
        out.print("  " + _step_line(step), markup=False)
    if any(s.get("error") for s in answer["steps"]):
        raise typer.Exit(1)


@app.command("list")
def list_(url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, site: SiteOption = None,
          home: HomeOption = None, as_json: JsonOption = False) -> None:
    """Every deployment you may see: model, status, each replica's pool, node and endpoint."""
    answer = Target(url=url, key=key, as_=as_, site=site, home=home).call("GET", "/admin/deployments")
    if as_json:
        echo_json(answer)
        return
    if not answer["data"]:
        out.print("no deployments")
        return
    table = Table()
    for column in ("name", "model", "status", "replicas", "pools", "audiences"):
        table.add_column(column, overflow="fold")
    for item in answer["data"]:
        rollout = (item.get("rollout") or {})
        status = item["status"] + (f" (update {rollout['state']} {rollout['replaced']}/{rollout['total']})"
                                   if rollout.get("state") in ("running", "failed") else "")
        replicas = item["replicas"]
        table.add_row(item["name"], item["model"], status,
                      f"{sum(r['state'] == 'ALIVE' for r in replicas)}/{item['replicas_wanted']}",
                      ", ".join(r["pool"] for r in replicas) or "—", ", ".join(item["audiences"]))
    out.print(table)


@app.command()
def scale(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    replicas: Annotated[int, typer.Argument(help="Replica count (0 keeps the deployment, stops all).")],
    url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, site: SiteOption = None,
    home: HomeOption = None, as_json: JsonOption = False,
) -> None:
    """Set a fixed replica count; new replicas go only where the rulebook allows."""
    if replicas < 0:
        raise die(f"REPLICAS: got {replicas}, want 0 or more")
    answer = Target(url=url, key=key, as_=as_, site=site, home=home).call(
        "PATCH", f"/admin/deployments/{name}", body={"replicas": replicas})
    if as_json:
        echo_json(answer)
        return
    pools = ", ".join(r["pool"] for r in answer["replicas"]) or "none"
    out.print(f"{name}: {len(answer['replicas'])} replica(s) — {pools}")


@app.command()
def remove(
    name: Annotated[str, typer.Argument(help="Deployment name.")],
    url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, site: SiteOption = None,
    home: HomeOption = None,
) -> None:
    """Stop every replica of a deployment and forget it."""
    Target(url=url, key=key, as_=as_, site=site, home=home).call("DELETE", f"/admin/deployments/{name}")
    out.print(f"{name}: removed")
