"""How the operator commands (``corridor deploy``, ``keys``, ``policy apply``) reach a gateway.

Which gateway: ``--url``, else the site's URL in ``$CORRIDOR_HOME/sites.json``
with ``--site FR|DE`` (``{"FR": {"url": …, "home": …}, …}``, written by a
two-site installation), else ``$CORRIDOR_URL``, else http://127.0.0.1:8000.

Which key: ``--key``, else ``--as WHO`` — an entry of the site's
``demo-keys.json`` written by ``corridor up``: ``FR`` or ``DE`` for that
jurisdiction's operator, or ``fr-interior/admin`` and the like — else
``$CORRIDOR_API_KEY``.

Exit status of the commands: 0 done, 1 refused by the gateway (the message
says why), 2 bad usage or the gateway unreachable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional

import httpx
import typer
from rich.console import Console
from rich.markup import escape

UrlOption = Annotated[Optional[str], typer.Option(
    "--url", help="Gateway URL (default: the --site's, $CORRIDOR_URL or http://127.0.0.1:8000).")]
KeyOption = Annotated[Optional[str], typer.Option("--key", help="API key (default $CORRIDOR_API_KEY).")]
AsOption = Annotated[Optional[str], typer.Option(
    "--as", help="A demo key from demo-keys.json: FR or DE (operator), or e.g. fr-interior/admin.")]
SiteOption = Annotated[Optional[str], typer.Option(
    "--site", help="FR or DE: that site's gateway and state folder, from $CORRIDOR_HOME/sites.json.")]
HomeOption = Annotated[Optional[Path], typer.Option(
    "--home", help="State directory (default $CORRIDOR_HOME or .corridor).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the gateway's JSON.")]


def die(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr; return the exit to raise."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


class Target:
    """A gateway and the key to call it with, resolved from the common options."""

    def __init__(self, *, url: str | None = None, key: str | None = None, as_: str | None = None,
                 site: str | None = None, home: Path | None = None) -> None:
        home = home or Path(os.environ.get("CORRIDOR_HOME", ".corridor"))
        site_home, site_url = home, None
        if site is not None:
            side = site.upper()
            if side not in ("FR", "DE"):
                raise die(f"--site: got {site!r}, want FR or DE")
            sites = home / "sites.json"
            if sites.exists():
                entry = json.loads(sites.read_text("utf-8")).get(side) or {}
                site_url, site_home = entry.get("url"), Path(entry.get("home") or home)
        self.url = (url or site_url or os.environ.get("CORRIDOR_URL") or "http://127.0.0.1:8000").rstrip("/")
        self.key = key or (self._demo_key(as_, site_home) if as_ else os.environ.get("CORRIDOR_API_KEY"))
        if not self.key:
            raise die("no API key: pass --key, --as FR|DE|<tenant>/<role>, or set $CORRIDOR_API_KEY")

    @staticmethod
    def _demo_key(who: str, home: Path) -> str:
        name = f"{who.upper()}/operator" if who.upper() in ("FR", "DE") else who
        path = home / "demo-keys.json"
        try:
            keys = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise die(f"--as {who}: cannot read {path} ({exc}); pass --key or start `corridor up`") from exc
        if name not in keys:
            raise die(f"--as {who}: {path} has no {name!r} key; known: {', '.join(sorted(keys))}")
        return keys[name]

    def call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
             timeout: float = 600) -> Any:
        """The gateway's JSON answer; an error answer exits 1 with its message, no answer exits 2."""
        try:
            response = httpx.request(method, self.url + path, json=body, params=params, timeout=timeout,
                                     headers={"authorization": f"Bearer {self.key}"})
        except httpx.HTTPError as exc:
            raise die(f"cannot reach the gateway at {self.url}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError:
            payload = {}
        if response.status_code >= 400:
            error = payload.get("error") if isinstance(payload, dict) else None
            if isinstance(error, dict):
                raise die(f"{response.status_code} {error.get('code')}: {error.get('message')}", code=1)
            raise die(f"{response.status_code}: {response.text[:500]}", code=1)
        return payload


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, ensure_ascii=False))
