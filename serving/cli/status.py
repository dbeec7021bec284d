"""``corridor status``: the installation's autarky state, read from ``$CORRIDOR_HOME`` alone.

Reports the policy in force and since when (the ledger's ``policy``
entries), whether the last start was in autarky mode, who signed the bundle
(checked now against the running configuration's operator keys), each
model's pinned digest beside its artifact's digest on disk, crisis
declarations, and the security feed. Works with the gateway running or not.

Exit status: 0 reported, 2 no state in the home directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from policies import PolicyError, default_bundle_path, load_bundle
from policies.signing import verify_bundle_file
from scheduler.ledger import DB_FILENAME, LedgerError, LedgerReader
from serving.autarky import local_model_directories
from serving.config import ConfigError, RunConfig, load_run_config
from scheduler.crisis import STORE_FILENAME, CrisisError, read_declarations
from serving.models.artifacts import artifact_digest


def _policy_history(home: Path) -> dict[str, Any] | None:
    """The last ``policy`` entry, and the first of the run of entries with its digest."""
    if not (home / DB_FILENAME).exists():
        return None
    try:
        reader = LedgerReader.open(home)
    except LedgerError:
        return None
    try:
        entries, after = [], None
        while True:
            page = reader.entries(kind="policy", after=after, limit=1000)
            entries.extend(item["entry"] for item in page["data"])
            if not page["has_more"]:
                break
            after = page["data"][-1]["index"]
        size = reader.size
    finally:
        reader.close()
    if not entries:
        return None
    last = entries[-1]
    since = last
    for entry in reversed(entries):
        if entry["policy_digest"] != last["policy_digest"]:
            break
        since = entry
    return {"last": last, "since": since, "ledger_size": size}


def collect(home: Path, policy_file: Path | None = None, config_file: Path | None = None) -> dict[str, Any]:
    """Everything ``corridor status`` reports, as one JSON-able dict."""
    history = _policy_history(home)
    last = history["last"] if history else None
    detail = (last or {}).get("detail") or {}
    path = policy_file or (Path(detail["path"]) if detail.get("path") else default_bundle_path())
    report: dict[str, Any] = {"home": str(home), "bundle": {"path": str(path)}}
    try:
        bundle = load_bundle(path)
    except PolicyError as exc:
        bundle = None
        report["bundle"]["error"] = str(exc)
    if bundle is not None:
        report["bundle"].update({"name": bundle.name, "version": bundle.version,
                                 "digest": bundle.digest(), "autarky_setting": bundle.settings.autarky})
    try:
        run_config = load_run_config(config_file, home)
    except ConfigError as exc:
        run_config = None
        report["config_error"] = str(exc)
    try:
        if run_config is None:
            raise ConfigError("the running configuration cannot be read (see config_error)")
        _, signer = verify_bundle_file(path, run_config.operator_keys)
        report["signature"] = {"status": "valid", "signer": signer.name,
                               "jurisdiction": signer.jurisdiction, "key_id": signer.key_id}
    except (PolicyError, ConfigError, OSError) as exc:
        report["signature"] = {"status": getattr(exc, "code", "error").lower(), "error": str(exc)}
    report["policy"] = None
    if history:
        report["policy"] = {"digest": last["policy_digest"], "bundle": detail.get("bundle"),
                            "version": detail.get("version"), "last_start": last["timestamp"],
                            "last_start_index": last["index"],
                            "in_force_since": history["since"]["timestamp"],
                            "changed_at_index": history["since"]["index"],
                            "ledger_size": history["ledger_size"]}
    report["autarky"] = {"last_start": bool(detail.get("autarky")),
                         "bundle_setting": bool(bundle and bundle.settings.autarky),
                         "signer_at_start": detail.get("signer")}
    directories = local_model_directories(home, bundle) if bundle else {}
    models = []
    for model in (bundle.models if bundle else []):
        directory = directories.get(model.id)
        digest = artifact_digest(directory) if directory is not None else None
        models.append({"model": model.id, "pinned": model.digest, "artifact": digest,
                       "path": str(directory) if directory else None,
                       "state": ("not pinned" if model.digest is None else
                                 "no artifact" if digest is None else
                                 "match" if digest == model.digest else "MISMATCH")})
    report["models"] = models
    store = home / STORE_FILENAME
    crisis: list[dict[str, Any]] = []
    if store.exists():
        import datetime as dt

        now = dt.datetime.now(dt.timezone.utc)
        try:
            crisis = [r.to_json(now) for r in read_declarations(store)]
        except CrisisError as exc:
            crisis = [{"error": str(exc)}]
    report["crisis"] = crisis
    feed = (run_config or RunConfig()).events_path(home)  # the configured feed, not a fixed name
    report["security_events"] = {"path": str(feed), "records": (
        sum(1 for _ in feed.open("rb")) if feed.exists() else 0)}
    return report


def status(
    home: Annotated[Optional[Path], typer.Option(
        "--home", envvar="CORRIDOR_HOME", help="State directory (default .corridor).")] = None,
    policy_file: Annotated[Optional[Path], typer.Option(
        "--policy", help="Bundle to check (default: the one the last start used).")] = None,
    config_file: Annotated[Optional[Path], typer.Option(
        "--config", help="Running configuration (default $CORRIDOR_HOME/corridor.yaml).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Autarky state: pinned digests, bundle signer, last policy change; crisis declarations."""
    home = (home or Path(".corridor")).resolve()
    if not home.is_dir():
        Console(stderr=True).print(f"[red]error:[/red] no state directory {escape(str(home))} "
                                   f"(set --home or $CORRIDOR_HOME)")
        raise typer.Exit(2)
    report = collect(home, policy_file, config_file)
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    out = Console(highlight=False, soft_wrap=True)
    autarky = report["autarky"]
    mode = "[bold green]on[/]" if autarky["last_start"] else "off"
    out.print(f"[bold]Corridor[/] {escape(report['home'])}")
    out.print(f"  autarky      {mode} at the last start; bundle setting "
              f"{'on' if autarky['bundle_setting'] else 'off'}")
    policy = report["policy"]
    if policy:
        out.print(f"  policy       {policy['bundle']} {policy['version']} {policy['digest']}")
        out.print(f"               in force since {policy['in_force_since']} (ledger "
                  f"#{policy['changed_at_index']}); last start {policy['last_start']}")
    else:
        out.print("  policy       no start recorded in the ledger")
    bundle = report["bundle"]
    out.print(f"  bundle       {escape(bundle['path'])}"
              + (f" ({bundle['digest']})" if "digest" in bundle else f" — {escape(bundle.get('error', ''))}"))
    signature = report["signature"]
    if signature["status"] == "valid":
        out.print(f"  signed by    [green]{signature['signer']}[/] ({signature['jurisdiction']}, "
                  f"key {signature['key_id'][:16]}…)")
    else:
        out.print(f"  signed by    [yellow]{signature['status']}[/]: {escape(signature['error'])}")
    for model in report["models"]:
        colour = {"match": "green", "MISMATCH": "bold red"}.get(model["state"], "yellow")
        out.print(f"  model        {model['model']:<14} pinned {model['pinned'] or '—'}  "
                  f"artifact {model['artifact'] or '—'}  [{colour}]{model['state']}[/]")
    active = [c for c in report["crisis"] if c.get("status") == "active"]
    pending = [c for c in report["crisis"] if c.get("status") == "pending"]
    out.print(f"  crisis       {len(active)} active, {len(pending)} pending, "
              f"{len(report['crisis'])} in all")
    for item in active + pending:
        out.print(f"               {item['id']} {item['status']} {', '.join(item['scope']['directions'])} "
                  f"until {item['valid_until']}")
    feed = report["security_events"]
    out.print(f"  security     {feed['records']} records in {escape(feed['path'])}")
