"""``corridor deploy``, ``corridor keys`` and ``corridor policy apply`` against a live gateway."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from serving.autoscale import Autoscaler, wanted_replicas
from serving.cli import app
from serving.deployments_file import DeploymentDecl
from serving.routing.load import GatewayLoad

from frontdoor_stack import bundle_text, deployment, frontdoor_stack

runner = CliRunner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames else CliRunner()


def corridor(*args, **env):
    return runner.invoke(app, [str(a) for a in args], env={"CORRIDOR_API_KEY": None, **env})


@pytest.fixture
def stack(tmp_path):
    with frontdoor_stack(tmp_path / "home") as stack:
        (stack.home / "demo-keys.json").write_text(json.dumps(stack.keys))
        yield stack


def common(stack):
    return ["--url", stack.url, "--home", stack.home]


def write(path, deployments):
    path.write_text(yaml.safe_dump({"deployments": deployments}, sort_keys=False))
    return path


def test_deploy_apply_dry_run_prints_each_replicas_pool_or_the_tally(stack, tmp_path):
    file = write(tmp_path / "d.yaml", [deployment(replicas=2),
                                       deployment("nowhere", audiences=[{"tenant": "de-federal-it",
                                                                         "marking": "VS-NfD"}])])
    result = corridor("deploy", "apply", file, "--dry-run", "--as", "FR", *common(stack))
    assert result.exit_code == 0, result.output
    assert "plan (dry run, nothing changed):" in result.stdout
    assert "create    interior-small: 0 → 2 replicas on fr-paris, fr-paris" in result.stdout
    assert "create    nowhere: 0 → 1 replicas — nowhere: 0/4 pools:" in result.stdout
    assert not stack.cluster.actors


def test_deploy_apply_list_scale_remove(stack, tmp_path):
    file = write(tmp_path / "d.yaml", [deployment()])
    applied = corridor("deploy", "apply", file, "--as", "FR", *common(stack))
    assert applied.exit_code == 0 and "[done]" in applied.stdout
    listed = corridor("deploy", "list", "--as", "fr-interior/admin", "--json", *common(stack))
    (item,) = json.loads(listed.stdout)["data"]
    assert item["name"] == "interior-small" and item["replicas"][0]["pool"] == "fr-paris"
    scaled = corridor("deploy", "scale", "interior-small", "0", "--as", "FR", *common(stack))
    assert scaled.exit_code == 0 and "interior-small: 0 replica(s)" in scaled.stdout
    assert corridor("deploy", "remove", "interior-small", "--as", "FR", *common(stack)).exit_code == 0
    assert "no deployments" in corridor("deploy", "list", "--as", "FR", *common(stack)).stdout


def test_deploy_apply_refuses_a_bad_file_locally_naming_path_and_problem(stack, tmp_path):
    file = write(tmp_path / "d.yaml", [{**deployment(), "replica": 2}])
    result = corridor("deploy", "apply", file, "--as", "FR", *common(stack))
    assert result.exit_code == 1
    assert "d.yaml: deployments[0].replica: unknown field" in result.stderr


def test_a_refusal_of_the_gateway_exits_1_with_its_message(stack, tmp_path):
    file = write(tmp_path / "d.yaml", [deployment(jurisdiction="DE")])
    result = corridor("deploy", "apply", file, "--as", "FR", *common(stack))
    assert result.exit_code == 1 and "403 other_jurisdiction" in result.stderr


def test_keys_create_prints_the_key_once_list_never_and_revoke_stops_it(stack):
    created = corridor("keys", "create", "--tenant", "fr-interior", "--role", "app", "--name", "triage",
                       "--expires", "30d", "--as", "FR", *common(stack))
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("cor_") and "shown only now" in created.stderr
    key_id = key.split("_")[1]
    listed = corridor("keys", "list", "--as", "FR", "--json", *common(stack))
    assert key not in listed.stdout and key_id in listed.stdout
    revoked = corridor("keys", "revoke", key_id, "--as", "FR", *common(stack))
    assert revoked.exit_code == 0 and f"key {key_id} revoked" in revoked.stdout
    stack.keys["new"] = key
    assert stack.call("GET", "/v1/models", "new").status_code == 401


def test_policy_apply_dry_run_then_apply(stack, tmp_path):
    assert stack.call("POST", "/admin/deployments", "FR/operator", json=deployment(
        "health", "corridor-tiny", audiences=[{"tenant": "fr-health", "marking": "PUBLIC"}])).status_code == 200
    document = json.loads(json.dumps(stack.document, default=str))
    paris, lyon = document["pools"][0], document["pools"][1]
    paris["accreditations"] = [a for a in paris["accreditations"] if a["id"] != "hds"]
    lyon["accreditations"].append({"id": "hds", "valid_until": "2031-12-31"})
    bundle = tmp_path / "next.yaml"
    bundle.write_text(bundle_text(document))
    plan = corridor("policy", "apply", bundle, "--dry-run", "--as", "FR", *common(stack))
    assert plan.exit_code == 0, plan.output
    assert "would put in force" in plan.stdout
    assert "pool fr-paris changed: accreditation hds removed (was valid until 2031-12-31)" in plan.stdout
    assert "health health-r1 in fr-paris: MISSING_ACCREDITATION" in plan.stdout
    assert [r.pool for r in stack.deployments.get("health").replicas] == ["fr-paris"]
    done = corridor("policy", "apply", bundle, "--as", "FR", *common(stack))
    assert done.exit_code == 0 and "in force now" in done.stdout and "placed again: health-r2" in done.stdout
    assert [r.pool for r in stack.deployments.get("health").replicas] == ["fr-lyon"]


def test_policy_apply_refuses_an_invalid_bundle_before_sending_it(stack, tmp_path):
    bundle = tmp_path / "bad.yaml"
    bundle.write_text("name: x\nversion: '1'\npool: []\n")
    result = corridor("policy", "apply", bundle, "--as", "FR", *common(stack))
    assert result.exit_code == 1 and "bad.yaml: pool: unknown field" in result.stderr
    assert "nothing sent" in result.stderr


def test_the_autoscaler_adds_a_replica_under_load_and_removes_it_when_calm(stack):
    now = [0.0]
    decl = DeploymentDecl.model_validate(deployment(replicas={"min": 1, "max": 2, "target_outstanding": 2}))
    stack.reconciler.apply_one(decl)
    outstanding = {}
    scaler = Autoscaler(stack.reconciler, lambda: GatewayLoad(outstanding), calm_s=30, clock=lambda: now[0])
    (first,) = stack.deployments.get("interior-small").replicas
    outstanding[first.id] = 3
    assert scaler.tick() == {"interior-small": 2}
    assert scaler.tick() == {}, "never beyond max"
    outstanding[first.id] = 0
    assert scaler.tick() == {} and (now.__setitem__(0, 29.0) or scaler.tick()) == {}
    now[0] = 31.0
    assert scaler.tick() == {"interior-small": 1}
    assert [wanted_replicas(outstanding=n, target=2, low=1, high=4) for n in (0, 1, 2, 3, 9)] == [1, 1, 1, 2, 4]
