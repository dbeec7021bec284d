"""The deployments API over the real scheduler (on a table of fake Ray nodes): who may deploy
what, where replicas go, the quota, the ledger of every placement, scale and removal."""

from __future__ import annotations

import pytest

from frontdoor_stack import deployment, frontdoor_stack


@pytest.fixture
def stack(tmp_path):
    with frontdoor_stack(tmp_path / "home") as stack:
        yield stack


def placements(stack, name):
    return [e for e in stack.entries("placement") if (e["detail"] or {}).get("deployment") == name]


class TestDeploying:
    def test_an_operator_deploys_a_model_where_the_rulebook_allows_and_the_ledger_says_so(self, stack):
        created = stack.call("POST", "/admin/deployments", "FR/operator", json=deployment(replicas=2))
        assert created.status_code == 200, created.text
        body = created.json()
        assert [r["pool"] for r in body["replicas"]] == ["fr-paris", "fr-paris"]
        assert body["declared"]["jurisdiction"] == "FR", "an operator's deployment stays in its pools"
        assert body["managed"] and body["step"]["action"] == "create"
        placed = placements(stack, "interior-small")
        assert len(placed) == 2 and all(e["allowed"] and e["pool"] == "fr-paris" for e in placed)
        assert {e["decision_id"] for e in placed} == {d for r in body["replicas"] for d in r["decision_ids"]}
        assert all("rules" in e["detail"]["decision"] for e in placed)
        assert {a.kwargs["model"] for a in stack.cluster.alive().values()} == {"corridor-small"}
        config = next(iter(stack.cluster.alive().values())).kwargs["config"]
        assert config["model_path"].endswith("models/corridor-small") and config["expected_digest"] is None

    def test_a_dry_run_names_each_replicas_pool_and_changes_nothing(self, stack):
        before = stack.ledger.size
        plan = stack.call("POST", "/admin/deployments?dry_run=true", "FR/operator",
                          json=deployment(replicas=2)).json()
        assert plan["dry_run"] and plan["steps"][0]["pools"] == ["fr-paris", "fr-paris"]
        assert stack.ledger.size == before and not stack.cluster.alive()
        assert stack.call("GET", "/admin/deployments", "FR/operator").json()["data"] == []

    def test_a_deployment_no_pool_allows_is_refused_naming_the_tally_and_logged(self, stack):
        body = deployment("vsnfd-in-fr", audiences=[{"tenant": "de-federal-it", "marking": "VS-NfD"}])
        refused = stack.call("POST", "/admin/deployments", "FR/operator", json=body)
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["code"] == "placement_refused" and error["type"] == "permission_error"
        assert "0/4 pools:" in error["message"] and "RESIDENCY" in error["message"]
        (entry,) = [e for e in stack.entries("placement") if not e["allowed"]]
        assert "RESIDENCY" in entry["reasons"] and entry["detail"]["deployment"] == "vsnfd-in-fr"
        assert "residency" in entry["detail"]["decision"]["rules"]
        dry = stack.call("POST", "/admin/deployments?dry_run=true", "DE/operator", json=body).json()
        assert dry["steps"][0]["pools"] == ["de-frankfurt"], "the DE operator could place it"

    def test_no_capacity_in_allowed_pools_is_a_409(self, stack):
        refused = stack.call("POST", "/admin/deployments", "FR/operator", json=deployment(replicas=3))
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "no_capacity"
        assert "NO_CAPACITY" in refused.json()["error"]["message"] and not stack.cluster.alive()

    def test_scale_then_remove_are_in_the_ledger_under_the_placing_decision(self, stack):
        stack.call("POST", "/admin/deployments", "FR/operator", json=deployment(replicas=2))
        scaled = stack.call("PATCH", "/admin/deployments/interior-small", "FR/operator", json={"replicas": 0})
        assert scaled.status_code == 200 and scaled.json()["replicas"] == []
        assert scaled.json()["step"]["action"] == "scale"
        released = [e for e in placements(stack, "interior-small") if e["detail"]["action"] == "scale"]
        placed = [e for e in placements(stack, "interior-small") if e["detail"]["action"] == "deploy"]
        assert len(released) == 2 and {e["decision_id"] for e in released} == {e["decision_id"] for e in placed}
        assert stack.call("PATCH", "/admin/deployments/interior-small", "FR/operator",
                          json={"replicas": 1}).json()["replicas"][0]["pool"] == "fr-paris"
        assert stack.call("DELETE", "/admin/deployments/interior-small", "FR/operator").json()["deleted"]
        assert [e["detail"]["action"] for e in placements(stack, "interior-small")][-1] == "remove"
        assert not stack.cluster.alive()
        gone = stack.call("GET", "/admin/deployments/interior-small", "FR/operator")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "deployment_not_found"

    def test_changing_the_model_replaces_replicas_one_at_a_time(self, stack):
        stack.cluster.add("node-fr-paris-2", "fr-paris", "FR")  # room for one more replica
        stack.call("POST", "/admin/deployments", "FR/operator", json=deployment(replicas=2))
        changed = stack.call("PATCH", "/admin/deployments/interior-small", "FR/operator",
                             json={"model": "corridor-tiny"})
        assert changed.json()["step"] == {**changed.json()["step"], "action": "update", "status": "rolling",
                                          "changes": ["model"]}
        stack.reconciler.wait_rollouts(10)
        (view,) = stack.call("GET", "/admin/deployments", "FR/operator").json()["data"]
        assert view["rollout"]["state"] == "done" and view["rollout"]["replaced"] == 2
        assert [r["model"] for r in view["replicas"]] == ["corridor-tiny", "corridor-tiny"]
        actions = [(e["detail"]["action"], e["detail"]["replica"]) for e in placements(stack, "interior-small")]
        assert actions == [("deploy", "interior-small-r1"), ("deploy", "interior-small-r2"),
                           ("rollout", "interior-small-r3"), ("rollout", "interior-small-r1"),
                           ("rollout", "interior-small-r4"), ("rollout", "interior-small-r2")]

    def test_a_rolling_update_without_room_stops_before_stopping_anything(self, stack):
        stack.call("POST", "/admin/deployments", "FR/operator", json=deployment(replicas=2))
        stack.call("PATCH", "/admin/deployments/interior-small", "FR/operator", json={"model": "corridor-tiny"})
        stack.reconciler.wait_rollouts(10)
        (view,) = stack.call("GET", "/admin/deployments", "FR/operator").json()["data"]
        assert view["rollout"]["state"] == "failed" and "NO_CAPACITY" in view["rollout"]["error"]
        assert [(r["model"], r["outdated"], r["state"]) for r in view["replicas"]] == [
            ("corridor-small", False, "ALIVE")] * 2
        assert view["model"] == "corridor-small", "the previous spec is back"

    def test_scaling_a_deployment_of_the_start_file_scales_it_without_a_rolling_update(self, stack):
        from serving.deployments_file import DeploymentDecl

        stack.reconciler.apply_one(DeploymentDecl.model_validate(deployment(audiences=[
            {"tenant": "fr-interior", "marking": "PUBLIC"}])))  # as corridor up places its file
        scaled = stack.call("PATCH", "/admin/deployments/interior-small", "FR/operator", json={"replicas": 2})
        assert scaled.json()["step"]["action"] == "scale" and scaled.json()["declared"]["jurisdiction"] is None
        assert len(scaled.json()["replicas"]) == 2
        moved = stack.call("PATCH", "/admin/deployments/interior-small", "FR/operator",
                           json={"engine_args": {"max_model_len": 128}})
        assert moved.json()["declared"]["jurisdiction"] == "FR", "a changed deployment is pinned"

    def test_apply_reconciles_a_whole_file_and_prunes_only_when_asked(self, stack):
        first = {"deployments": [deployment(), deployment("interior-tiny", "corridor-tiny")]}
        done = stack.call("POST", "/admin/deployments/apply", "FR/operator", json=first).json()
        assert [(s["action"], s["status"]) for s in done["steps"]] == [("create", "done"), ("create", "done")]
        second = {"deployments": [deployment(replicas=2)]}
        plan = stack.call("POST", "/admin/deployments/apply?dry_run=true", "FR/operator", json=second).json()
        assert [(s["action"], s["replicas_to"]) for s in plan["steps"]] == [("scale", 2)]
        pruned = stack.call("POST", "/admin/deployments/apply", "FR/operator",
                            json={**second, "prune": True}).json()
        assert [s["action"] for s in pruned["steps"]] == ["scale", "remove"]
        names = [d["name"] for d in stack.call("GET", "/admin/deployments", "FR/operator").json()["data"]]
        assert names == ["interior-small"]


class TestWhoMayDeploy:
    def test_a_tenant_admin_deploys_for_its_own_tenant_within_its_quota(self, stack):
        mine = stack.call("POST", "/admin/deployments", "fr-interior/admin", json=deployment())
        assert mine.status_code == 200 and mine.json()["owner"] == "fr-interior"
        seen = stack.call("GET", "/admin/deployments", "fr-interior/admin").json()["data"]
        assert [d["name"] for d in seen] == ["interior-small"]
        assert stack.call("GET", "/admin/deployments", "de-federal-it/admin").json()["data"] == []

    def test_a_tenant_admin_deploying_for_another_tenant_is_a_403(self, stack):
        body = deployment(audiences=[{"tenant": "fr-interior", "marking": "DR"},
                                     {"tenant": "fr-health", "marking": "PUBLIC"}])
        refused = stack.call("POST", "/admin/deployments", "fr-interior/admin", json=body)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_your_tenant"
        assert "fr-health" in refused.json()["error"]["message"] and not stack.cluster.alive()

    def test_a_tenant_admin_changes_only_its_own_tenants_deployments(self, stack):
        stack.call("POST", "/admin/deployments", "FR/operator",
                   json=deployment(audiences=[{"tenant": "fr-health", "marking": "PUBLIC"}]))
        for method, body in (("PATCH", {"replicas": 0}), ("DELETE", None)):
            refused = stack.call(method, "/admin/deployments/interior-small", "fr-interior/admin", json=body)
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_your_tenant"

    @pytest.mark.parametrize("pins", [{"pool": "de-frankfurt"}, {"jurisdiction": "DE"}],
                             ids=["a DE pool", "the DE jurisdiction"])
    def test_an_operator_of_fr_deploying_on_de_pools_is_a_403(self, stack, pins):
        body = deployment(audiences=[{"tenant": "de-federal-it", "marking": "VS-NfD"}], **pins)
        refused = stack.call("POST", "/admin/deployments", "FR/operator", json=body)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "other_jurisdiction"
        assert stack.call("POST", "/admin/deployments", "DE/operator", json=body).status_code == 200

    def test_over_the_gpu_quota_is_a_403_with_a_stable_code_and_a_ledger_refusal(self, stack):
        assert stack.call("POST", "/admin/deployments", "fr-interior/admin",
                          json=deployment(replicas=2)).status_code == 200
        big = deployment("second", replicas={"min": 1, "max": 7})
        refused = stack.call("POST", "/admin/deployments", "fr-interior/admin", json=big)
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["code"] == "gpu_quota_exceeded" and error["param"] == "replicas"
        assert "may hold 8 GPUs" in error["message"] and "holds 2" in error["message"]
        entry = next(e for e in stack.entries("placement") if "GPU_QUOTA_EXCEEDED" in e["reasons"])
        assert entry["allowed"] is False and entry["decision_id"] == refused.headers["x-corridor-decision"]
        fits = deployment("second", replicas={"min": 1, "max": 6})
        assert stack.call("POST", "/admin/deployments?dry_run=true", "fr-interior/admin", json=fits).status_code == 200

    @pytest.mark.parametrize("who", ["fr-interior/app", "*/auditor"])
    def test_apps_and_auditors_may_not_deploy(self, stack, who):
        refused = stack.call("POST", "/admin/deployments", who, json=deployment())
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "wrong_role"


@pytest.mark.parametrize(("body", "param"), [
    ({**deployment(), "replica": 2}, "replica"),
    (deployment(model="gpt-5"), "model"),
    (deployment(replicas={"min": 2, "max": 1}), "replicas"),
    (deployment(audiences=[{"tenant": "fr-interior", "marking": "SECRETISH"}]), "audiences[0].marking"),
], ids=["an unknown field", "an unknown model", "a range upside down", "an unknown marking"])
def test_a_bad_body_is_a_400_naming_the_parameter(stack, body, param):
    refused = stack.call("POST", "/admin/deployments", "FR/operator", json=body)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == param and refused.json()["error"]["type"] == "invalid_request_error"


def test_a_model_whose_artifact_is_gone_is_a_400_naming_model_and_path(stack):
    (stack.home / "models" / "corridor-small" / "config.json").unlink()
    refused = stack.call("POST", "/admin/deployments", "FR/operator", json=deployment())
    error = refused.json()["error"]
    assert refused.status_code == 400 and error["code"] == "artifact_unavailable"
    assert "model corridor-small: artifact" in error["message"] and "models/corridor-small" in error["message"]
