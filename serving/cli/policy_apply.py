"""``corridor policy apply BUNDLE [--dry-run]``: a new bundle on a running installation.

Validates BUNDLE here (every problem, exit 1, nothing sent), then posts it with
its detached signature ``BUNDLE.sig`` when present (required in autarky mode) to
``POST /admin/policy`` as an operator. ``--dry-run`` prints what changes —
tenants, pools, accreditations, models — and which live replicas the new rules
would no longer allow; without it the bundle is activated at once and the
replicas it denies are evicted and placed again where it allows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from policies import BundleError, load_bundle
from policies.signing import signature_path
from serving.cli.gateway_client import (AsOption, HomeOption, JsonOption, KeyOption, SiteOption,
                                        Target, UrlOption, die, echo_json)

out = Console(highlight=False, soft_wrap=True)


def apply(
    file: Annotated[Path, typer.Argument(help="Policy bundle (YAML) to put in force.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the effect; change nothing.")] = False,
    url: UrlOption = None, key: KeyOption = None, as_: AsOption = None, site: SiteOption = None,
    home: HomeOption = None, as_json: JsonOption = False,
) -> None:
    """Activate a bundle on the running installation, without restart (operators)."""
    try:
        text = file.read_text("utf-8")
        load_bundle(file, text=text)
    except OSError as exc:
        raise die(f"{file}: {exc.strerror}") from exc
    except BundleError as exc:
        raise die(f"{exc}\nnothing sent", code=1) from exc
    sig = signature_path(file)
    body = {"bundle": text, "source": file.name,
            "signature": sig.read_text("utf-8") if sig.exists() else None}
    answer = Target(url=url, key=key, as_=as_, site=site, home=home).call(
        "POST", "/admin/policy", body=body, params={"dry_run": "true"} if dry_run else None)
    if as_json:
        echo_json(answer)
        return
    bundle = answer["bundle"]
    if answer["unchanged"]:
        out.print(f"{bundle['name']} {bundle['version']} ({answer['policy_digest']}) is already in force")
        return
    head = "would put in force" if dry_run else "in force now"
    out.print(f"{head}: {bundle['name']} {bundle['version']} {answer['policy_digest']}"
              + (f", signed by {answer['signed_by']}" if answer.get("signed_by") else ""))
    out.print(f"replaces {answer['previous_digest']}")
    for change in answer["changes"]:
        what = change["section"].rstrip("s") + (f" {change['id']}" if change["id"] else "")
        details = f": {'; '.join(change['details'])}" if change["details"] else ""
        out.print(f"  {what} {change['kind']}{details}", markup=False)
    denied = answer["no_longer_allowed"]
    verb = "would no longer be allowed" if dry_run else "no longer allowed (evicted)"
    out.print(f"replicas {verb}: {len(denied)}")
    for item in denied:
        out.print(f"  {item['deployment']} {item['replica']} in {item['pool']}: "
                  f"{', '.join(item['reasons'])}", markup=False)
    healed = answer.get("healed") or {}
    if healed.get("placed"):
        out.print(f"placed again: {', '.join(healed['placed'])}")
    for name, reason in (healed.get("degraded") or {}).items():
        out.print(f"  {name} degraded: {reason}", markup=False)
