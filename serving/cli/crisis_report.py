"""``corridor crisis report ID``: everything that crossed under one declaration, from the ledger.

For the closing review both operators file: the declaration's steps (who, when, signed by which
site), the requests routed or forwarded under it (by tenant, model and pool), the replicas placed
across and when they were evicted, and the batches that used them. Read from one site's ledger
(``--as FR|DE`` picks the site's state folder from ``sites.json``; ``--site-home`` names one).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from serving.cli.crisis import AsOption, HomeOption, JsonOption, app


def _site_home(as_: str | None, home: Path | None, site_home: Path | None) -> Path:
    if site_home is not None:
        return site_home
    base = home or Path(os.environ.get("CORRIDOR_HOME", ".corridor"))
    sites_file = base / "sites.json"
    if as_ and sites_file.exists():
        site = json.loads(sites_file.read_text("utf-8")).get(as_.upper())
        if isinstance(site, dict) and site.get("home"):
            return Path(site["home"])
    return base


def collect(entries: list[dict[str, Any]], declaration: str) -> dict[str, Any]:
    """The report of ``declaration`` over ledger ``entries`` (``{"index", "entry"}`` items)."""
    steps, requests, placed, evicted, batches = [], Counter(), [], [], Counter()
    for item in entries:
        entry = item["entry"]
        if entry.get("declaration") != declaration:
            continue
        detail = entry.get("detail") or {}
        if entry["kind"] == "crisis":
            steps.append({"step": detail.get("step"), "at": entry["timestamp"], "status": detail.get("status"),
                          "operator": detail.get("operator"), "site": detail.get("site"),
                          "signed": "signed_step" in detail})
        elif entry["kind"] == "routing" and entry.get("allowed"):
            where = detail.get("forwarded_to") and f"forwarded to {detail['forwarded_to']}" or \
                detail.get("forwarded_from") and f"served for {detail['forwarded_from']}" or "routed"
            requests[(entry.get("tenant"), (entry.get("workload") or {}).get("model"), entry.get("pool"), where)] += 1
        elif entry["kind"] == "placement" and detail.get("action") == "evict":
            evicted.append({"replica": detail.get("replica"), "pool": entry.get("pool"), "at": entry["timestamp"]})
        elif entry["kind"] == "placement" and detail.get("action") == "batch":
            batches[(detail.get("batch"), entry.get("pool"))] += 1
        elif entry["kind"] == "placement" and entry.get("allowed"):
            placed.append({"replica": detail.get("replica"), "deployment": detail.get("deployment"),
                           "pool": entry.get("pool"), "tenant": entry.get("tenant"), "at": entry["timestamp"]})
    return {"declaration": declaration, "steps": steps,
            "requests": [{"tenant": t, "model": m, "pool": p, "how": h, "count": n}
                         for (t, m, p, h), n in sorted(requests.items(), key=str)],
            "replicas_placed": placed, "replicas_evicted": evicted,
            "batches": [{"batch": b, "pool": p, "replica_uses": n} for (b, p), n in sorted(batches.items(), key=str)]}


@app.command()
def report(declaration: Annotated[str, typer.Argument(help="The declaration id (crisis_…).")],
           as_: AsOption = None, home: HomeOption = None,
           site_home: Annotated[Optional[Path], typer.Option(
               "--site-home", help="The site's state folder holding ledger.db (default: from sites.json).")] = None,
           as_json: JsonOption = False) -> None:
    """Everything that crossed under a declaration, from this site's ledger (the closing review)."""
    from scheduler.ledger import LedgerError, LedgerReader

    folder = _site_home(as_, home, site_home)
    try:
        reader = LedgerReader.open(folder)
    except LedgerError as exc:
        Console(stderr=True).print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from exc
    try:
        result = collect(list(reader.export()), declaration)
    finally:
        reader.close()
    if not result["steps"]:
        Console(stderr=True).print(f"error: the ledger in {folder} has no step of {declaration}", markup=False)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    out = Console()
    out.print(f"[bold]{declaration}[/] — ledger of {folder}", highlight=False)
    for step in result["steps"]:
        who = step["operator"] or {}
        out.print(f"  {step['at']}  {step['step']:<10} {step['status']:<8} {who.get('operator', '')} "
                  f"{who.get('jurisdiction', '')}{'  (signed step)' if step['signed'] else ''}", highlight=False)
    table = Table("tenant", "model", "pool", "how", "requests", title="requests under the declaration")
    for row in result["requests"]:
        table.add_row(str(row["tenant"]), str(row["model"]), str(row["pool"]), row["how"], str(row["count"]))
    out.print(table)
    for replica in result["replicas_placed"]:
        out.print(f"  replica {replica['replica']} placed in {replica['pool']} at {replica['at']}", highlight=False)
    for replica in result["replicas_evicted"]:
        out.print(f"  replica {replica['replica']} evicted from {replica['pool']} at {replica['at']}", highlight=False)
    for batch in result["batches"]:
        out.print(f"  batch {batch['batch']} used {batch['pool']}", highlight=False)
