"""``corridor crisis declare|approve|revoke|list|show``: the operator API from the command line.

Talks HTTP to the gateway (``--url``, default ``$CORRIDOR_URL`` or
http://127.0.0.1:8000) with an operator key: ``--key``, else ``--as FR|DE``
(the ``FR/operator`` / ``DE/operator`` entry of ``$CORRIDOR_HOME/demo-keys.json``
written by ``corridor up``), else ``$CORRIDOR_API_KEY``::

    corridor crisis declare --as FR --tenant de-federal-it --marking VS-NfD --model minilm \\
        --direction 'DE->FR' --reason "no embedding capacity in Germany" --hours 12
    corridor crisis approve --as DE crisis_…
    corridor crisis list
    corridor crisis revoke --as FR crisis_…

A direction is ``'FR->DE'`` (quoted: ``>`` is the shell's) or ``FR-DE``.

Exit status: 0 done, 1 refused by the gateway (the message says why), 2 bad
usage or the gateway unreachable.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(help="Declare, approve, revoke and list crisis declarations (operators).",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)

UrlOption = Annotated[Optional[str], typer.Option(
    "--url", help="Gateway URL (default $CORRIDOR_URL or http://127.0.0.1:8000).")]
KeyOption = Annotated[Optional[str], typer.Option("--key", help="Operator API key.")]
AsOption = Annotated[Optional[str], typer.Option(
    "--as", help="Use the demo operator key of FR or DE from $CORRIDOR_HOME/demo-keys.json.")]
HomeOption = Annotated[Optional[Path], typer.Option(
    "--home", help="State directory with demo-keys.json (default $CORRIDOR_HOME or .corridor).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the gateway's JSON.")]


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def _die(message: str, code: int = 2) -> typer.Exit:
    _err().print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _key(key: str | None, as_: str | None, home: Path | None) -> str:
    if key:
        return key
    if as_:
        side = as_.upper()
        if side not in ("FR", "DE"):
            raise _die(f"--as: got {as_!r}, want FR or DE")
        path = (home or Path(os.environ.get("CORRIDOR_HOME", ".corridor"))) / "demo-keys.json"
        try:
            keys = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise _die(f"--as {side}: cannot read {path} ({exc}); pass --key or start `corridor up`") from exc
        if f"{side}/operator" not in keys:
            raise _die(f"--as {side}: {path} has no '{side}/operator' key")
        return keys[f"{side}/operator"]
    env = os.environ.get("CORRIDOR_API_KEY")
    if env:
        return env
    raise _die("no operator key: pass --key, --as FR|DE, or set $CORRIDOR_API_KEY")


def _url(url: str | None, as_: str | None, home: Path | None) -> str | None:
    """``--url``, else with ``--as FR|DE`` that site's gateway from ``sites.json`` (the corridor)."""
    if url or not as_:
        return url
    path = (home or Path(os.environ.get("CORRIDOR_HOME", ".corridor"))) / "sites.json"
    try:
        sites = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None  # one installation: the default gateway
    site = sites.get(as_.upper()) if isinstance(sites, dict) else None
    return site.get("url") if isinstance(site, dict) else None


def _call(method: str, path: str, *, url: str | None, key: str, body: Any = None) -> dict[str, Any]:
    """The gateway's JSON answer (exit 1 with its error, 2 when unreachable)."""
    from serving.cli.gateway_client import Target

    return Target(url=url, key=key).call(method, path, body=body, timeout=30)


def _direction(value: str) -> str:
    """``FR->DE`` from ``FR->DE``, ``fr-de``, ``FR:DE`` or ``FR→DE``; else unchanged (the gateway refuses)."""
    match = re.fullmatch(r"\s*(FR|DE)\s*(?:->|→|-|:)\s*(FR|DE)\s*", value.upper())
    return f"{match[1]}->{match[2]}" if match else value


def _line(item: dict[str, Any]) -> str:
    scope = item["scope"]
    state = item["status"]
    colour = {"active": "bold green", "pending": "yellow", "revoked": "red", "expired": "dim"}.get(state, "")
    awaiting = f", awaiting {', '.join(item['awaiting'])}" if item["awaiting"] and state == "pending" else ""
    return (f"{item['id']}  [{colour}]{state}[/]  {', '.join(scope['directions'])}  "
            f"tenants {', '.join(scope['tenants'])} · markings {', '.join(scope['markings'])} · "
            f"models {', '.join(scope['models'])}  until {item['valid_until']}  "
            f"backed by {', '.join(item['backed_by'])}{awaiting}")


def _show(item: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(item, indent=2, ensure_ascii=False))
    else:
        Console(highlight=False, soft_wrap=True).print(_line(item))


@app.command()
def declare(
    tenant: Annotated[list[str], typer.Option("--tenant", help="Tenant in scope (repeat for more).")],
    marking: Annotated[list[str], typer.Option("--marking", help="Marking in scope (repeat).")],
    model: Annotated[list[str], typer.Option("--model", help="Model in scope (repeat).")],
    direction: Annotated[list[str], typer.Option("--direction", help="FR->DE and/or DE->FR (repeat).")],
    reason: Annotated[str, typer.Option("--reason", help="Why; the other side reads it.")],
    hours: Annotated[float, typer.Option("--hours", help="Validity window from now, in hours.")],
    url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Declare mutual assistance; it stays pending until the other jurisdiction approves."""
    scope = {"tenants": tenant, "markings": marking, "models": model,
             "directions": [_direction(d) for d in direction]}
    body = {"scope": scope, "reason": reason, "valid_for_hours": hours}
    _show(_call("POST", "/admin/crisis", url=_url(url, as_, home), key=_key(key, as_, home), body=body), as_json)


@app.command()
def approve(
    declaration: Annotated[str, typer.Argument(help="Declaration id, e.g. crisis_3f2a….")],
    url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve as an operator of the other jurisdiction (the declarer cannot)."""
    _show(_call("POST", f"/admin/crisis/{declaration}/approve", url=_url(url, as_, home),
                key=_key(key, as_, home)), as_json)


@app.command()
def revoke(
    declaration: Annotated[str, typer.Argument(help="Declaration id.")],
    url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke at once (either jurisdiction); crossings stop within seconds."""
    _show(_call("POST", f"/admin/crisis/{declaration}/revoke", url=_url(url, as_, home),
                key=_key(key, as_, home)), as_json)


@app.command("list")
def list_(
    url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every declaration, newest first, with its status now."""
    payload = _call("GET", "/admin/crisis", url=_url(url, as_, home), key=_key(key, as_, home))
    if as_json:
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    if not payload["data"]:
        Console().print("no crisis declarations")
        return
    table = Table(show_lines=False)
    table.add_column("id", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("directions", "scope", "until", "backed by"):
        table.add_column(column, overflow="fold")
    for item in payload["data"]:
        scope = item["scope"]
        table.add_row(item["id"], item["status"], ", ".join(scope["directions"]),
                      f"{', '.join(scope['tenants'])} · {', '.join(scope['markings'])} · "
                      f"{', '.join(scope['models'])}", item["valid_until"], ", ".join(item["backed_by"]))
    Console(highlight=False).print(table)


@app.command()
def show(
    declaration: Annotated[str, typer.Argument(help="Declaration id.")],
    url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, home: HomeOption = None,
    as_json: JsonOption = False,
) -> None:
    """One declaration."""
    _show(_call("GET", f"/admin/crisis/{declaration}", url=_url(url, as_, home), key=_key(key, as_, home)), as_json)


# The closing review's report reads the ledger; it registers here.
import serving.cli.crisis_report  # noqa: E402,F401
