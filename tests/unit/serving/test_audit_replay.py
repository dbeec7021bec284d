"""``corridor audit replay`` decides recorded decisions again with the bundle kept by digest."""

from __future__ import annotations

import os

from typer.testing import CliRunner

from policies import Policy, Workload
from policies.archive import ARCHIVE_DIRNAME, BundleArchive
from scheduler.ledger import Ledger
from scheduler.ledger.decisions import decision_entry, refusal_entry
from serving.cli import app


def record(home, policy: Policy) -> None:
    BundleArchive(home / ARCHIVE_DIRNAME).put(policy.bundle)
    allowed = policy.decide_all(Workload.create("fr-interior", "DR", model="corridor-tiny", id="req-1"))
    refused = policy.decide_all(Workload.create("fr-interior", "SECRET", model="corridor-tiny", id="req-2"))
    with Ledger.open(home) as ledger:
        ledger.append(decision_entry("routing", allowed.allowed[0], summary=allowed.summary()))
        ledger.append(refusal_entry("routing", refused))


def test_a_ledger_of_decisions_replays_identically(tmp_path, default_policy):
    record(tmp_path, default_policy)
    result = CliRunner().invoke(app, ["audit", "replay", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "2 of 2 decisions replayed identically, 0 differ" in result.output


def test_an_altered_bundle_in_the_archive_is_reported_for_every_entry_it_decided(tmp_path, default_policy):
    record(tmp_path, default_policy)
    (stored,) = (tmp_path / ARCHIVE_DIRNAME).glob("*.json")
    os.chmod(stored, 0o644)
    stored.write_bytes(stored.read_bytes().replace(b'"fr-paris"', b'"fr-pariz"', 1))
    result = CliRunner().invoke(app, ["audit", "replay", "--home", str(tmp_path)])
    assert result.exit_code == 1
    assert "0 of 2 decisions replayed identically, 2 differ" in result.output
    assert "cannot replay" in result.output
