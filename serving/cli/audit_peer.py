"""``corridor audit verify --peer`` and ``corridor audit reconcile``: checks across the two sites.

``verify --peer URL``: the peer's log, as its auditor API serves it now, must be consistent with
every head of it this site witnessed (``<home>/witness.json``): its current signed head is
checked with its public key (whose id must be the one the witnessed heads carry), then a
consistency proof from each witnessed size. Exit 1 names the first head that does not hold.

``reconcile``: every forwarded request must appear in both ledgers under one decision id — at
the home site (``forwarded_to``) and at the site that served it (``forwarded_from``). Lists
the ones found on one side only (exit 1 when any).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.markup import escape

from serving.cli.audit import app

KeyOption = Annotated[str | None, typer.Option("--key", envvar="CORRIDOR_AUDITOR_KEY",
                                               help="An auditor key valid at the site(s) asked "
                                                    "(default: '*/auditor' of demo-keys.json).")]


def _home(home: Path | None) -> Path:
    return (home or Path(".corridor")).resolve()


def _key(key: str | None, home: Path) -> str:
    if key:
        return key
    for folder in (home, home.parent.parent):  # a site's home lives in <corridor home>/sites/<site>
        path = folder / "demo-keys.json"
        if path.exists():
            found = json.loads(path.read_text("utf-8")).get("*/auditor")
            if found:
                return found
    raise typer.BadParameter("no auditor key: pass --key or set $CORRIDOR_AUDITOR_KEY", param_hint="--key")


def _get(base: str, path: str, key: str, **params: Any) -> Any:
    try:
        answer = httpx.get(base.rstrip("/") + path, params=params, timeout=60,
                           headers={"Authorization": f"Bearer {key}"})
    except httpx.HTTPError as exc:
        Console(stderr=True).print(f"error: cannot reach {escape(base)}: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    if answer.status_code >= 400:
        Console(stderr=True).print(f"error: {escape(base + path)} answered {answer.status_code}: "
                                   f"{escape(answer.text[:300])}")
        raise typer.Exit(2)
    return answer.json() if "json" in answer.headers.get("content-type", "") else answer.text


def verify_peer(peer_url: str, home: Path | None, key: str | None) -> None:
    """Check the peer's log against every head of it this site witnessed (``verify --peer``)."""
    from scheduler.ledger.exceptions import WitnessError
    from scheduler.ledger.witness_audit import verify_against_witnessed

    home = _home(home)
    state = home / "witness.json"
    if not state.exists():
        Console(stderr=True).print(f"error: no {escape(str(state))}: this site has witnessed nothing yet")
        raise typer.Exit(2)
    items = json.loads(state.read_text("utf-8")).get("items", [])
    heads = [item["tree_head"] for item in items]
    if not heads:
        Console(stderr=True).print("error: no witnessed head yet")
        raise typer.Exit(2)
    site = items[-1]["site"]
    key = _key(key, home)
    public = _get(peer_url, "/audit/public-key", key)
    if public["key_id"] != heads[-1]["key_id"]:
        Console().print(f"[red]✗[/red] the peer's ledger key {public['key_id'][:16]}… is not the one whose heads "
                        f"were witnessed ({heads[-1]['key_id'][:16]}…)")
        raise typer.Exit(1)
    current = _get(peer_url, "/audit/tree-head", key)
    try:
        report = verify_against_witnessed(
            heads, peer_site=site, tree_head=current, peer_key=public,
            consistency_proof=lambda first, second: _get(peer_url, "/audit/proof/consistency", key,
                                                         first=first, second=second))
    except WitnessError as exc:
        Console().print(f"[red]✗[/red] the log of site {site} does not hold: {escape(str(exc))}")
        raise typer.Exit(1) from exc
    Console().print(f"[green]✓[/green] site {site}: its log of {current['tree_size']} entries is consistent with "
                    f"the {len(heads)} heads this site witnessed ({report})", highlight=False)


def _forwarded(base: str, key: str, field: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        page = _get(base, "/audit/entries", key, kind="routing", limit=1000,
                    **({"after": after} if after is not None else {}))
        for item in page["data"]:
            entry = item["entry"]
            if (entry.get("detail") or {}).get(field) and entry.get("allowed"):
                found[entry["decision_id"]] = entry
        if not page["has_more"]:
            return found
        after = page["data"][-1]["index"]


@app.command()
def reconcile(home: Annotated[Path | None, typer.Option("--home", envvar="CORRIDOR_HOME",
                                                       help="The corridor's home (with sites.json).")] = None,
              key: KeyOption = None) -> None:
    """List forwarded requests that appear in one site's ledger but not the other's."""
    home = (home or Path(".corridor")).resolve()
    sites = json.loads((home / "sites.json").read_text("utf-8"))
    key = _key(key, home)
    missing = 0
    for origin, server in (("FR", "DE"), ("DE", "FR")):
        sent = {d: e for d, e in _forwarded(sites[origin]["url"], key, "forwarded_to").items()
                if e["detail"]["forwarded_to"] == server}
        served = {d: e for d, e in _forwarded(sites[server]["url"], key, "forwarded_from").items()
                  if e["detail"]["forwarded_from"] == origin}
        for decision in sorted(set(sent) ^ set(served)):
            where = origin if decision in sent else server
            Console().print(f"[red]✗[/red] {decision}: forwarded {origin}→{server}, only in the ledger of {where}")
            missing += 1
        Console().print(f"{origin}→{server}: {len(sent)} forwarded, {len(served)} served, "
                        f"{len(set(sent) & set(served))} in both", highlight=False)
    if missing:
        raise typer.Exit(1)
