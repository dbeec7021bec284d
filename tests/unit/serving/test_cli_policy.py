"""``corridor policy check|explain`` as a user runs them."""

import json

from typer.testing import CliRunner

from policies.bundle import default_bundle_path
from serving.cli import app

runner = CliRunner()


def test_check_accepts_the_default_bundle_and_prints_its_digest(default_policy):
    result = runner.invoke(app, ["policy", "check", str(default_bundle_path())])
    assert result.exit_code == 0, result.output
    assert default_policy.digest in result.output
    assert "4 pools, 5 tenants, 3 models" in result.output


def test_check_lists_every_problem_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = default_bundle_path().read_text().replace("residency: [FR, DE]", "residence: [FR, DE]")
    bad.write_text(text.replace("count: 8}", "count: eight}", 1))
    result = runner.invoke(app, ["policy", "check", str(bad)])
    assert result.exit_code == 1
    assert "3 problem(s)" in result.output
    assert "tenants[4].residency: required field is missing" in result.output
    assert "tenants[4].residence: unknown field" in result.output
    assert "pools[0].gpu.count: Input should be a valid integer" in result.output


def explain(*args):
    result = runner.invoke(app, ["policy", "explain", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_explain_dr_of_fr_interior_allows_paris_and_denies_every_german_pool_by_residency(default_policy):
    report = explain("--tenant", "fr-interior", "--marking", "DR")
    assert report["policy_digest"] == default_policy.digest
    assert report["workload"]["marking"] == "DR"
    by_pool = {d["pool"]: d for d in report["decisions"]}
    assert by_pool["fr-paris"]["allowed"] is True and by_pool["fr-paris"]["reasons"] == []
    for pool in ("de-frankfurt", "de-berlin"):
        assert by_pool[pool]["allowed"] is False and by_pool[pool]["jurisdiction"] == "DE"
        assert "RESIDENCY" in {r["code"] for r in by_pool[pool]["reasons"]}
    assert set(report["decisions"][0]) == {"pool", "jurisdiction", "allowed", "reasons", "declaration"}
    assert set(by_pool["fr-lyon"]["reasons"][0]) == {"code", "rule", "message"}


def test_explain_secret_denies_every_pool_with_classified_never():
    report = explain("--tenant", "fr-interior", "--marking", "SECRET")
    assert len(report["decisions"]) == 4
    for decision in report["decisions"]:
        assert not decision["allowed"]
        assert decision["reasons"][0]["code"] == "CLASSIFIED_NEVER"
        assert decision["reasons"][0]["rule"] == "classified-never"


def test_explain_uses_the_tenants_default_marking_and_data_flags():
    report = explain("--tenant", "de-federal-it", "--data", "health", "--model", "corridor-tiny")
    assert report["workload"]["marking"] == "VS-NfD"
    assert report["workload"]["data_flags"] == ["health"]
    assert [d["pool"] for d in report["decisions"] if d["allowed"]] == ["de-frankfurt"]


def test_explain_refuses_an_unknown_marking_with_the_known_ones():
    result = runner.invoke(app, ["policy", "explain", "--tenant", "fr-interior", "--marking", "SECRETISH"])
    assert result.exit_code == 2
    assert "unknown marking 'SECRETISH'" in result.output and "VS-NfD" in result.output


def test_explain_table_names_rules_and_their_sources():
    result = runner.invoke(app, ["policy", "explain", "--tenant", "fr-health", "--model", "corridor-tiny"])
    assert result.exit_code == 0, result.output
    assert "health-fr" in result.output and "HDS" in result.output
    assert "1/4 pools" in result.output
