"""``corridor audit replay``: decide again what the ledger recorded, with the rules of the time.

For each ``routing``, ``placement`` or ``violation`` entry that kept its decision's facts
(``detail.decision``), the bundle is read back from the archive by the digest the entry names
(``$CORRIDOR_HOME/bundles``, write-once), the crisis declarations from the ledger's own
``crisis`` entries (each carries the declaration's full text), and the decision is made again
at the recorded time: the same verdict, rule ids, declaration and accreditations, or a
reported difference. A refusal everywhere is replayed over every pool. Exit 1 when any
entry differs or cannot be replayed (e.g. its bundle is missing or altered in the archive).
"""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from serving.cli.audit import HomeOption, app

DECIDING_KINDS = ("routing", "placement", "violation")


def _declarations(items: list[dict[str, Any]]):
    """The latest full text of every declaration in the ledger's crisis entries (its approvals and
    revocation carry their times, so its status at any earlier moment follows from it)."""
    from policies import Declaration

    latest: dict[str, Declaration] = {}
    for item in items:
        detail = item["entry"].get("detail") or {}
        if item["entry"]["kind"] == "crisis" and isinstance(detail.get("declaration"), dict):
            declaration = Declaration.from_json(detail["declaration"])
            latest[declaration.id] = declaration
    return tuple(latest.values())


def _replay_one(facts: dict[str, Any], policy, declarations) -> list[str]:
    from policies import Workload
    from policies.archive import replay

    if facts.get("pool") is not None:
        return list(replay(facts, policy, declarations).differences)
    workload = Workload.from_json(facts["workload"], id=facts.get("workload_id"))
    at = dt.datetime.fromisoformat(facts["at"]) if facts.get("at") else None
    evaluation = policy.decide_all(workload, at=at, declarations=declarations)
    differences = []
    if evaluation.allowed:
        differences.append(f"verdict: recorded denied everywhere, replayed allowed on "
                           f"{', '.join(d.pool for d in evaluation.allowed)}")
    if evaluation.rules() != list(facts.get("rules", [])):
        differences.append(f"rules: recorded {facts.get('rules')}, replayed {evaluation.rules()}")
    return differences


@app.command()
def replay(home: HomeOption = None,
           sample: Annotated[int | None, typer.Option("--sample", min=1, help="Replay this many entries, "
                                                      "drawn at random (default: every one).")] = None,
           since: Annotated[str | None, typer.Option("--since", help="Only entries from this RFC 3339 "
                                                     "time on.")] = None,
           database: Annotated[str | None, typer.Option(
               "--database", help="The site's PostgreSQL database (postgresql://…) whose archive "
                                  "holds the bundles (default: the folder in the home).")] = None) -> None:
    """Decide recorded decisions again with the bundle and declarations of their time."""
    from policies.exceptions import PolicyError
    from scheduler.bundle_store import open_bundle_archive
    from scheduler.database import DatabaseUnavailable
    from scheduler.ledger import LedgerError, LedgerReader

    home = (home or Path(".corridor")).resolve()
    out, err = Console(), Console(stderr=True)
    try:
        reader = LedgerReader.open(home)
    except LedgerError as exc:
        err.print(f"error: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    try:
        items = list(reader.export())
    finally:
        reader.close()
    declarations = _declarations(items)
    chosen = [item for item in items if item["entry"]["kind"] in DECIDING_KINDS
              and isinstance((item["entry"].get("detail") or {}).get("decision"), dict)
              and "workload" in item["entry"]["detail"]["decision"]
              and (since is None or item["entry"]["timestamp"] >= since)]
    if sample is not None and sample < len(chosen):
        chosen = sorted(random.sample(chosen, sample), key=lambda item: item["index"])
    try:
        archive = open_bundle_archive(home, database=database)
    except (ValueError, DatabaseUnavailable) as exc:
        err.print(f"error: {escape(str(exc))}")
        raise typer.Exit(2) from exc
    policies: dict[str, Any] = {}
    differing = 0
    for item in chosen:
        facts = item["entry"]["detail"]["decision"]
        digest = facts["policy"]["digest"]
        try:
            if digest not in policies:
                policies[digest] = archive.policy(digest)
            differences = _replay_one(facts, policies[digest], declarations)
        except (PolicyError, KeyError, ValueError, DatabaseUnavailable) as exc:
            differences = [f"cannot replay: {type(exc).__name__}: {exc}"]
        if differences:
            differing += 1
            out.print(f"[red]✗[/red] entry {item['index']} ({item['entry']['kind']}, decision "
                      f"{item['entry']['decision_id']}): {escape('; '.join(differences))}", highlight=False)
    archive.close()
    colour = "red" if differing else "green"
    out.print(f"[{colour}]{len(chosen) - differing} of {len(chosen)} decisions replayed identically, "
              f"{differing} differ[/{colour}] ({len(policies)} bundle(s) from the archive, "
              f"{len(declarations)} declaration(s) from the ledger)", highlight=False)
    if differing:
        raise typer.Exit(1)
