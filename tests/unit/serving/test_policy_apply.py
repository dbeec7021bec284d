"""A new bundle on a running installation: validated first, its effect shown, then in force for
router, limiter and scheduler at once; replicas it denies are evicted and placed again where it
allows, and the ledger shows both."""

from __future__ import annotations

import copy

import pytest

from policies import Workload
from scheduler.current_policy import CurrentPolicy
from serving.gateway.errors import RateLimited
from serving.gateway.limits import RateLimiter
from serving.routing import Router, StaticEndpoints

from frontdoor_stack import bundle_text, deployment, frontdoor_stack, policy_of
from gateway_stack import endpoint

CHAT_FR = deployment("chat-fr", "corridor-tiny", audiences=[
    {"tenant": "fr-interior", "marking": "DR"}, {"tenant": "fr-health", "marking": "PUBLIC"}])


def with_accreditations(document, **pools):
    """A copy of ``document`` whose named pools hold these accreditations: {id: valid_until}."""
    changed = copy.deepcopy(document)
    for pool in changed["pools"]:
        if pool["id"] in pools:
            held = {a["id"]: a for a in pool["accreditations"]}
            pool["accreditations"] = [{**held.get(a, {"id": a}), "valid_until": until}
                                      for a, until in pools[pool["id"]].items()]
    changed["version"] = changed["version"] + "-next"
    return changed


PARIS_HDS_EXPIRED = {"secnumcloud-3.2": "2031-12-31", "hds": "2025-01-31", "dr-homologation": "2031-12-31"}
LYON_ACCREDITED = {"secnumcloud-3.2": "2031-12-31", "hds": "2031-12-31", "dr-homologation": "2031-12-31"}
PARIS_RENEWED = {"secnumcloud-3.2": "2031-12-31", "hds": "2032-06-30", "dr-homologation": "2031-12-31"}


@pytest.fixture
def stack(tmp_path):
    with frontdoor_stack(tmp_path / "home") as stack:
        assert stack.call("POST", "/admin/deployments", "FR/operator", json=CHAT_FR).status_code == 200
        yield stack


def apply(stack, document, *, dry_run=False, who="FR/operator", **extra):
    path = "/admin/policy" + ("?dry_run=true" if dry_run else "")
    return stack.call("POST", path, who, json={"bundle": bundle_text(document), "source": "next.yaml", **extra})


def pools_of(stack, name="chat-fr"):
    return [r.pool for r in stack.deployments.get(name).replicas]


def test_a_dry_run_shows_the_changes_and_the_replicas_no_longer_allowed_and_changes_nothing(stack):
    before = (stack.current.policy.digest, stack.ledger.size)
    new = with_accreditations(stack.document, **{"fr-paris": PARIS_HDS_EXPIRED, "fr-lyon": LYON_ACCREDITED})
    plan = apply(stack, new, dry_run=True).json()
    assert plan["dry_run"] and not plan["applied"] and plan["previous_digest"] == before[0]
    changes = {(c["section"], c["id"]): c["details"] for c in plan["changes"]}
    assert changes[("pools", "fr-paris")] == ["accreditation hds valid until 2031-12-31 → 2025-01-31"]
    assert "accreditation dr-homologation added (valid until 2031-12-31)" in changes[("pools", "fr-lyon")]
    assert plan["no_longer_allowed"] == [{"deployment": "chat-fr", "replica": "chat-fr-r1",
                                          "pool": "fr-paris", "reasons": ["EXPIRED_ACCREDITATION"]}]
    assert (stack.current.policy.digest, stack.ledger.size) == before and pools_of(stack) == ["fr-paris"]


def test_an_expired_accreditation_moves_the_replica_to_a_pool_the_new_rules_allow(stack):
    old_digest = stack.current.policy.digest
    new = with_accreditations(stack.document, **{"fr-paris": PARIS_HDS_EXPIRED, "fr-lyon": LYON_ACCREDITED})
    answer = apply(stack, new).json()
    assert answer["applied"] and answer["healed"]["evicted"] == ["chat-fr-r1"]
    assert answer["healed"]["placed"] == ["chat-fr-r2"] and pools_of(stack) == ["fr-lyon"]
    assert stack.current.policy.digest == answer["policy_digest"] == stack.gateway.policy.digest
    policy_entry = stack.entries("policy")[-1]
    assert policy_entry["policy_digest"] == answer["policy_digest"]
    assert policy_entry["detail"]["previous_digest"] == old_digest and policy_entry["detail"]["by"]
    moves = [e for e in stack.entries("placement") if e["detail"].get("action") in ("evict", "heal")]
    evicted = [e for e in moves if e["detail"]["action"] == "evict"]
    placed = [e for e in moves if e["detail"]["action"] == "heal"]
    assert evicted and all(e["pool"] == "fr-paris" and e["allowed"] is False for e in evicted)
    assert "EXPIRED_ACCREDITATION" in evicted[-1]["reasons"] and "health-fr" in evicted[-1]["detail"]["decision"]["rules"]
    assert all(e["policy_digest"] == answer["policy_digest"] for e in moves)
    assert placed and all(e["pool"] == "fr-lyon" and e["allowed"] for e in placed)
    assert placed[0]["detail"]["replaces"] == "chat-fr-r1 (evicted)"
    kept = (stack.home / "bundles" / (answer["policy_digest"].removeprefix("sha256:") + ".yaml"))
    assert kept.read_text() == bundle_text(new)


def test_a_renewed_accreditation_brings_back_a_deployment_the_expiry_left_without_a_pool(stack):
    expired = with_accreditations(stack.document, **{"fr-paris": PARIS_HDS_EXPIRED})
    answer = apply(stack, expired).json()
    assert answer["healed"]["evicted"] == ["chat-fr-r1"] and "chat-fr" in answer["healed"]["degraded"]
    assert pools_of(stack) == [] and stack.deployments.get("chat-fr").status == "degraded"
    refusal = [e for e in stack.entries("placement") if e["detail"].get("action") == "heal" and not e["allowed"]]
    assert refusal and "EXPIRED_ACCREDITATION" in refusal[-1]["reasons"]
    renewed = with_accreditations(stack.document, **{"fr-paris": PARIS_RENEWED})
    plan = apply(stack, renewed, dry_run=True).json()
    assert plan["changes"][0]["details"] == ["accreditation hds valid until 2025-01-31 → 2032-06-30"]
    answer = apply(stack, renewed).json()
    assert answer["healed"]["placed"] and pools_of(stack) == ["fr-paris"]


def test_a_bundle_that_fails_validation_changes_nothing(stack):
    before = (stack.current.policy.digest, stack.ledger.size)
    broken = copy.deepcopy(stack.document)
    broken["tenants"][0]["residence"] = ["FR"]
    refused = apply(stack, broken)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "invalid_bundle" and "next.yaml: tenants[0].residence: unknown field" in error["message"]
    assert (stack.current.policy.digest, stack.ledger.size) == before


def test_the_same_bundle_again_is_a_no_op(stack):
    size = stack.ledger.size
    answer = apply(stack, stack.document).json()
    assert answer["unchanged"] and not answer["applied"] and stack.ledger.size == size


def test_autarky_accepts_only_a_signed_bundle(stack):
    stack.gateway.policy_switch.autarky = True
    refused = apply(stack, with_accreditations(stack.document, **{"fr-lyon": LYON_ACCREDITED}))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "bundle_signature"
    assert "UNSIGNED" in refused.json()["error"]["message"]


def test_autarky_accepts_a_bundle_signed_by_a_trusted_operator_key(stack):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from policies.signing import OperatorKey, sign_bundle

    key = Ed25519PrivateKey.generate()
    switch = stack.gateway.policy_switch
    switch.autarky, switch.trusted = True, [OperatorKey.of("fr-ops", "FR", key.public_key())]
    new = with_accreditations(stack.document, **{"fr-lyon": LYON_ACCREDITED})
    signature = sign_bundle(bundle_text(new).encode(), key).to_text()
    tampered = apply(stack, new, signature=sign_bundle(b"other bytes", key).to_text())
    assert tampered.status_code == 403 and "BAD_SIGNATURE" in tampered.json()["error"]["message"]
    answer = apply(stack, new, signature=signature).json()
    assert answer["applied"] and answer["signed_by"] == "fr-ops"
    assert stack.entries("policy")[-1]["detail"]["signer"] == "fr-ops"


@pytest.mark.parametrize("who", ["fr-interior/admin", "*/auditor"])
def test_only_operators_apply_a_policy(stack, who):
    assert apply(stack, stack.document, who=who).status_code == 403


def test_the_router_routes_the_very_next_request_by_the_new_rules(tmp_path):
    from frontdoor_stack import bundle_document

    document = bundle_document(tmp_path)
    current = CurrentPolicy(policy_of(document))
    router = Router(current, StaticEndpoints([endpoint("fr-paris", "http://p"), endpoint("fr-lyon", "http://l")]),
                    cache_ttl=3600)
    health = Workload.create("fr-health", "PUBLIC", model="corridor-tiny", data_flags="health")
    assert [e.pool for e in router.route(health).candidates] == ["fr-paris"]  # cached for an hour
    current.switch(policy_of(with_accreditations(document, **{"fr-paris": PARIS_HDS_EXPIRED,
                                                              "fr-lyon": LYON_ACCREDITED})))
    route = router.route(health)
    assert [e.pool for e in route.candidates] == ["fr-lyon"]
    assert route.evaluation.policy_digest == current.policy.digest


def test_the_limiter_takes_a_new_quota_at_once(tmp_path):
    from frontdoor_stack import bundle_document

    document = bundle_document(tmp_path)
    current = CurrentPolicy(policy_of(document))
    limiter = RateLimiter(current, clock=lambda: 0.0)
    for _ in range(600):
        limiter.admit("fr-health")
    with pytest.raises(RateLimited):
        limiter.admit("fr-health")
    tighter = copy.deepcopy(document)
    tighter["tenants"][0]["quotas"] = {"requests_per_minute": 2}
    current.switch(policy_of(tighter))
    limiter.admit("fr-health")
    limiter.admit("fr-health")
    with pytest.raises(RateLimited, match="2 requests per minute"):
        limiter.admit("fr-health")
