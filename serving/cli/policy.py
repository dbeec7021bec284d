"""``corridor policy check|explain|keygen|sign|verify|pin|apply``: validate a bundle, explain a
workload against every pool; operator keys, detached bundle signatures and pinned model digests
(autarky); a new bundle on a running installation (:mod:`serving.cli.policy_apply`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from policies import BundleError, Policy, PolicyError, Workload, default_bundle_path, load_bundle
from serving.cli import policy_apply

app = typer.Typer(help="Validate policy bundles and explain decisions.", no_args_is_help=True)
app.command("apply")(policy_apply.apply)  # a new bundle on a running installation
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


# -- signatures and pinned digests (autarky mode) ------------------------------------------


@app.command()
def keygen(
    out: Annotated[Path, typer.Argument(help="Private key file to create (PEM, mode 0600).")],
    name: Annotated[str, typer.Option(help="Who holds the key, e.g. fr-ops-duty.")],
    jurisdiction: Annotated[str, typer.Option(help="FR or DE.")],
) -> None:
    """Create an operator signing key; print its operator_keys entry for corridor.yaml."""
    from policies.signing import OperatorKey, write_private_key

    if jurisdiction not in ("FR", "DE"):
        errors.print(f"[bold red]error:[/] --jurisdiction: got {jurisdiction!r}, want FR or DE")
        raise typer.Exit(2)
    try:
        key = write_private_key(out)
    except FileExistsError as exc:
        errors.print(f"[bold red]error:[/] {out} exists; choose another file")
        raise typer.Exit(2) from exc
    entry = OperatorKey.of(name, jurisdiction, key.public_key())
    errors.print(f"private key written to {out} (keep it offline); key id {entry.key_id}")
    typer.echo("operator_keys:\n"
               f"  - {{name: {entry.name}, jurisdiction: {entry.jurisdiction}, "
               f"public_key: {entry.public_key}}}")


@app.command()
def sign(
    file: Annotated[Path, typer.Argument(help="Policy bundle (YAML) to sign.")],
    key: Annotated[Path, typer.Option("--key", help="Operator private key (PEM).")],
) -> None:
    """Sign a valid bundle's exact bytes with an operator key; writes FILE.sig."""
    from policies.exceptions import BundleSignatureError
    from policies.signing import (load_private_key, parse_signatures, sign_bundle, signature_path,
                                  signatures_text, with_signature)

    try:
        data = file.read_bytes()
        bundle = load_bundle(file, text=data.decode("utf-8"))
        private = load_private_key(key)
    except BundleError as exc:
        errors.print(f"[bold red]{file}: not signed, {len(exc.issues)} problem(s)[/]")
        for issue in exc.issues:
            errors.print(f"  {issue}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    except (OSError, ValueError) as exc:
        errors.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    signature = sign_bundle(data, private, bundle_digest=bundle.digest())
    target = signature_path(file)
    existing = []
    if target.exists():  # a joint bundle: the other jurisdiction's operator signed already
        try:
            existing = [s for s in parse_signatures(target.read_text("utf-8"), str(target))
                        if s.bundle_digest == bundle.digest()]
        except BundleSignatureError:
            existing = []
    signatures = with_signature(existing, signature)
    target.write_text(signatures_text(signatures), "utf-8")
    console.print(f"[bold green]signed[/] {file} → {target} ({len(signatures)} signature(s))",
                  highlight=False, soft_wrap=True)
    console.print(f"key {signature.key_id} · bundle {bundle.digest()}", highlight=False, soft_wrap=True)


@app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="Policy bundle (YAML) whose FILE.sig to check.")],
    config_file: Annotated[Optional[Path], typer.Option(
        "--config", help="Running configuration with operator_keys (default $CORRIDOR_HOME/corridor.yaml).")] = None,
    home: Annotated[Optional[Path], typer.Option(
        "--home", envvar="CORRIDOR_HOME", help="State directory (default .corridor).")] = None,
) -> None:
    """Check FILE.sig against the trusted operator keys: exit 0 with the signer, else 1."""
    from policies.exceptions import BundleSignatureError
    from policies.signing import verify_bundle_signers
    from serving.config import ConfigError, load_run_config

    try:
        trusted = load_run_config(config_file, home or Path(".corridor")).operator_keys
        _, signers = verify_bundle_signers(file, trusted)
    except BundleSignatureError as exc:
        errors.print(f"[bold red]✗ {file}[/]: {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    except (ConfigError, OSError) as exc:
        errors.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from exc
    for signer in signers:
        console.print(f"[bold green]✓[/] {file} signed by {signer.name} ({signer.jurisdiction}, "
                      f"key {signer.key_id})", highlight=False, soft_wrap=True)
    missing = sorted({"FR", "DE"} - {s.jurisdiction for s in signers})
    if missing:
        console.print(f"  not yet signed by an operator of {', '.join(missing)} (a joint bundle of the "
                      f"corridor needs both in autarky mode)", highlight=False, soft_wrap=True)


@app.command()
def pin(
    file: Annotated[Path, typer.Argument(help="Policy bundle (YAML) to pin.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the pinned bundle.")],
    model: Annotated[Optional[list[str]], typer.Option(
        "--model", help="ID=DIRECTORY of a model artifact (repeat); default: the models "
        "`corridor up` serves, where present.")] = None,
    home: Annotated[Optional[Path], typer.Option(
        "--home", envvar="CORRIDOR_HOME", help="State directory with the built demo model.")] = None,
    autarky: Annotated[bool, typer.Option(help="Also set settings.autarky.")] = True,
) -> None:
    """Write a copy of a bundle with each model's artifact digest pinned (comments are not kept)."""
    import yaml

    from serving.autarky import local_model_directories
    from serving.models.artifacts import artifact_digest
    from serving.models.demo import build_demo_model

    home = home or Path(".corridor")
    try:
        source = load_bundle(file)
    except BundleError:
        source = None  # reported below
    directories = local_model_directories(home, source)
    given = {m.partition("=")[0] for m in model or []}
    for entry in (source.models if source else []):
        build = entry.artifact.build if entry.artifact else None
        if build and entry.id not in directories and entry.id not in given:
            target = Path(os.environ.get("CORRIDOR_MODELS") or home / "models") / entry.id
            errors.print(f"building {entry.id} into {target} (as `corridor up` would) …")
            directories[entry.id] = build_demo_model(target, build)
    for item in model or []:
        model_id, sep, directory = item.partition("=")
        if not sep:
            errors.print(f"[bold red]error:[/] --model: got {item!r}, want ID=DIRECTORY")
            raise typer.Exit(2)
        directories[model_id] = Path(directory)
    try:
        document = yaml.safe_load(file.read_text("utf-8"))
        load_bundle(file)
    except BundleError as exc:
        errors.print(f"[bold red]{file}: {len(exc.issues)} problem(s)[/]")
        for issue in exc.issues:
            errors.print(f"  {issue}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    pinned = {}
    for entry in document.get("models", []):
        directory = directories.get(entry["id"])
        if directory is None:
            errors.print(f"[yellow]{entry['id']}: no artifact found here; left as it was[/]")
            continue
        entry["digest"] = pinned[entry["id"]] = artifact_digest(directory)
    if autarky:
        document.setdefault("settings", {})["autarky"] = True
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    load_bundle(out, text=text)
    out.write_text(text, "utf-8")
    for model_id, digest in pinned.items():
        console.print(f"pinned {model_id} {digest}", highlight=False, soft_wrap=True)
    console.print(f"[bold green]written[/] {out}; sign it: corridor policy sign {out} --key KEY.pem",
                  highlight=False, soft_wrap=True)


@app.command()
def doc(
    file: Annotated[Optional[Path], typer.Argument(
        help="Policy bundle (YAML); default: the shipped default bundle.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write the Markdown here.")] = None,
    today: Annotated[Optional[str], typer.Option(
        help="Day (YYYY-MM-DD) whose accreditations count; default: today (UTC).")] = None,
) -> None:
    """Write the bundle as Markdown for the regulator: markings, rules and their sources,
    the pools that satisfy each rule, equivalences and crisis rules."""
    import datetime as dt

    from policies.document import document

    try:
        day = dt.date.fromisoformat(today) if today else None
    except ValueError as exc:
        errors.print(f"[bold red]error:[/] --today: got {today!r}, want YYYY-MM-DD")
        raise typer.Exit(2) from exc
    source = file or default_bundle_path()
    try:
        bundle = load_bundle(source)
    except BundleError as exc:
        errors.print(f"[bold red]{source}: {len(exc.issues)} problem(s)[/]")
        for issue in exc.issues:
            errors.print(f"  {issue}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from exc
    text = document(bundle, today=day)
    if out is None:
        typer.echo(text, nl=False)
        return
    out.write_text(text, "utf-8")
    errors.print(f"written {out}", highlight=False, soft_wrap=True)
