"""``corridor keys create|list|revoke``: API keys of a running installation.

Talks to the key API (:mod:`serving.gateway.keys_api`) as an operator (``--as FR``)
or a tenant admin for its app keys (``--as fr-interior/admin``)::

    corridor keys create --as FR --tenant fr-interior --role app --name triage --expires 30d
    corridor keys list --as FR
    corridor keys revoke --as FR 3f2a9c0d1e2b

``create`` prints the key once (on stdout, alone, so ``KEY=$(corridor keys create …)``
works); nothing shows it again. A revoked key stops working at once.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from serving.cli.gateway_client import (AsOption, HomeOption, JsonOption, KeyOption, SiteOption,
                                        Target, UrlOption, echo_json)

app = typer.Typer(help="Issue, list and revoke API keys (operators; tenant admins for app keys).",
                  no_args_is_help=True, pretty_exceptions_show_locals=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@app.command()
def create(
    role: Annotated[str, typer.Option("--role", help="app, admin, operator or auditor.")] = "app",
    tenant: Annotated[Optional[str], typer.Option("--tenant", help="Tenant of an app or admin key.")] = None,
    jurisdiction: Annotated[Optional[str], typer.Option(help="FR or DE, for an operator key.")] = None,
    scope: Annotated[Optional[list[str]], typer.Option(
        "--scope", help="Tenant an auditor key may read (repeat), or '*'.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="What the key is for.")] = None,
    expires: Annotated[Optional[str], typer.Option(
        "--expires", help="30d, 12h, a date (2026-12-31) or an RFC 3339 time.")] = None,
    minimum_marking: Annotated[Optional[str], typer.Option(
        "--minimum-marking", help="Requests with this key are treated at least at this marking.")] = None,
    url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, site: SiteOption = None,
    home: HomeOption = None, as_json: JsonOption = False,
) -> None:
    """Issue a key; print it once."""
    body = {"role": role, "tenant": tenant, "jurisdiction": jurisdiction, "scope": scope or [],
            "name": name, "expires_at": expires, "minimum_marking": minimum_marking}
    answer = Target(url=url, key=key, as_=as_, site=site, home=home).call(
        "POST", "/admin/keys", body={k: v for k, v in body.items() if v not in (None, [])})
    if as_json:
        echo_json(answer)
        return
    who = answer.get("tenant") or answer.get("jurisdiction") or ",".join(answer.get("scope") or [])
    err.print(f"key {answer['id']} ({answer['role']}, {who}) issued; expires "
              f"{answer.get('expires_at') or 'never'}. It is shown only now:")
    typer.echo(answer["key"])


@app.command("list")
def list_(
    tenant: Annotated[Optional[str], typer.Option("--tenant", help="Only this tenant's keys.")] = None,
    url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, site: SiteOption = None,
    home: HomeOption = None, as_json: JsonOption = False,
) -> None:
    """The keys you manage: id, name, role, tenant, created, last used, expiry, status — never a secret."""
    answer = Target(url=url, key=key, as_=as_, site=site, home=home).call(
        "GET", "/admin/keys", params={"tenant": tenant} if tenant else None)
    if as_json:
        echo_json(answer)
        return
    table = Table()
    for column in ("id", "name", "role", "tenant", "created", "last used", "expires", "status"):
        table.add_column(column, overflow="fold")
    for item in answer["data"]:
        table.add_row(item["id"], item.get("name") or "—", item["role"],
                      item.get("tenant") or item.get("jurisdiction") or ",".join(item.get("scope") or []),
                      (item.get("created_at") or "—")[:19], (item.get("last_used_at") or "never")[:19],
                      (item.get("expires_at") or "never")[:19], item["status"])
    Console(highlight=False).print(table)


@app.command()
def revoke(
    key_id: Annotated[str, typer.Argument(help="Key id (the part after cor_ in the key, or from list).")],
    url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, site: SiteOption = None,
    home: HomeOption = None, as_json: JsonOption = False,
) -> None:
    """Revoke a key at once."""
    answer = Target(url=url, key=key, as_=as_, site=site, home=home).call("DELETE", f"/admin/keys/{key_id}")
    if as_json:
        echo_json(answer)
        return
    Console(highlight=False).print(f"key {answer['id']} revoked at {answer['revoked_at']}")
