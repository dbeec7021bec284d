"""The crisis registry: two persons across the border, a bounded window, every step in the ledger."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest

from policies import Policy, Workload
from policies.bundle import Operator
from scheduler.crisis import (CrisisRegistry, CrisisStoreError, InvalidDeclaration,
                            SelfApproval, UnknownDeclaration, WrongState)

ANNE = Operator(operator="anne", jurisdiction="FR")
ALAIN = Operator(operator="alain", jurisdiction="FR")
BERND = Operator(operator="bernd", jurisdiction="DE")
SCOPE = {"tenants": ["fr-interior"], "markings": ["Diffusion Restreinte"], "models": ["corridor-tiny"],
         "directions": ["FR->DE"]}
T0 = dt.datetime(2026, 11, 28, 8, 0, tzinfo=dt.timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def registry(tmp_path, ledger, clock, default_policy):
    return CrisisRegistry(default_policy, ledger, tmp_path / "home" / "crisis.json", clock=clock)


def steps(ledger, declaration_id=None):
    items = ledger.entries(kind="crisis", limit=1000)["data"]
    return [i["entry"]["detail"]["step"] for i in items
            if declaration_id is None or i["entry"]["declaration"] == declaration_id]


def dr_to_frankfurt(policy, registry, clock):
    workload = Workload.create("fr-interior", "DR", model="corridor-tiny")
    return policy.decide(workload, "de-frankfurt", at=clock(), declarations=registry.declarations())


class TestTwoPersonRule:
    def test_a_declaration_starts_pending_backed_only_by_the_declarers_side(self, registry, clock, ledger):
        record = registry.declare(ANNE, scope=SCOPE, reason="fr-paris lost", valid_for_hours=12)
        view = record.to_json(clock())
        assert (view["status"], view["backed_by"], view["awaiting"]) == ("pending", ["FR"], ["DE"])
        assert view["scope"]["markings"] == ["DR"], "markings are stored under their canonical id"
        assert steps(ledger) == ["declared"]

    def test_the_declarer_cannot_approve_their_own_declaration(self, registry, ledger):
        record = registry.declare(ANNE, scope=SCOPE, reason="fr-paris lost", valid_for_hours=12)
        with pytest.raises(SelfApproval, match="two-person rule"):
            registry.approve(record.id, ANNE)
        assert registry.get(record.id).declaration.approvals == [] and steps(ledger) == ["declared"]

    def test_an_approval_from_the_same_side_leaves_it_pending_and_nothing_crosses(
            self, registry, clock, ledger, default_policy):
        record = registry.declare(ANNE, scope=SCOPE, reason="fr-paris lost", valid_for_hours=12)
        approved = registry.approve(record.id, ALAIN)
        assert approved.status(clock()) == "pending"
        assert approved.to_json(clock())["awaiting"] == ["DE"]
        decision = dr_to_frankfurt(default_policy, registry, clock)
        assert not decision.allowed and "RESIDENCY" in decision.codes
        assert steps(ledger) == ["declared", "approved"]

    def test_the_other_sides_approval_activates_it_and_the_rulebook_lets_it_cross(
            self, registry, clock, ledger, default_policy):
        assert not dr_to_frankfurt(default_policy, registry, clock).allowed
        record = registry.declare(ANNE, scope=SCOPE, reason="fr-paris lost", valid_for_hours=12)
        active = registry.approve(record.id, BERND)
        assert active.status(clock()) == "active"
        decision = dr_to_frankfurt(default_policy, registry, clock)
        assert decision.allowed and decision.declaration == record.id
        assert steps(ledger) == ["declared", "approved", "activated"]
        activated = ledger.entries(kind="crisis", limit=10)["data"][-1]["entry"]
        assert activated["declaration"] == record.id
        assert activated["detail"]["backed_by"] == ["DE", "FR"]
        assert activated["detail"]["status"] == "active"

    def test_the_same_operator_approving_twice_is_refused(self, registry):
        record = registry.declare(ANNE, scope=SCOPE, reason="r", valid_for_hours=1)
        registry.approve(record.id, ALAIN)
        with pytest.raises(WrongState, match="already approved"):
            registry.approve(record.id, ALAIN)

    def test_an_active_declaration_cannot_be_approved_again(self, registry):
        record = registry.declare(ANNE, scope=SCOPE, reason="r", valid_for_hours=1)
        registry.approve(record.id, BERND)
        with pytest.raises(WrongState, match="is active"):
            registry.approve(record.id, ALAIN)

    def test_an_unknown_id_is_refused(self, registry):
        with pytest.raises(UnknownDeclaration):
            registry.approve("crisis_nope", BERND)


class TestWindow:
    def test_it_expires_by_itself_and_the_expiry_is_logged_once(self, registry, clock, ledger, default_policy):
        record = registry.declare(ANNE, scope=SCOPE, reason="r", valid_for_hours=2)
        registry.approve(record.id, BERND)
        clock.advance(hours=1, minutes=59)
        assert registry.tick() == 0 and dr_to_frankfurt(default_policy, registry, clock).allowed
        clock.advance(minutes=1)
        assert not dr_to_frankfurt(default_policy, registry, clock).allowed, "the rulebook checks the window"
        assert registry.tick() == 1 and registry.tick() == 0
        assert steps(ledger) == ["declared", "approved", "activated", "expired"]
        assert registry.declarations() == (), "ended declarations leave the rulebook's view"
        with pytest.raises(WrongState, match="expired"):
            registry.revoke(record.id, BERND)

    def test_a_pending_declaration_that_is_never_approved_expires_too(self, registry, clock, ledger):
        record = registry.declare(ANNE, scope=SCOPE, reason="r", valid_for_hours=1)
        clock.advance(hours=1)
        registry.tick()
        assert registry.get(record.id).status(clock()) == "expired"
        with pytest.raises(WrongState, match="expired"):
            registry.approve(record.id, BERND)
        assert steps(ledger) == ["declared", "expired"]

    @pytest.mark.parametrize("hours", [0, -1, 72.01, 1e9, float("nan"), "12", True])
    def test_a_window_outside_zero_to_the_bundles_maximum_is_refused(self, registry, hours):
        with pytest.raises(InvalidDeclaration, match="crisis_max_hours|valid_for_hours") as info:
            registry.declare(ANNE, scope=SCOPE, reason="r", valid_for_hours=hours)
        assert info.value.param == "valid_for_hours"

    def test_the_maximum_itself_is_allowed(self, registry, clock):
        record = registry.declare(ANNE, scope=SCOPE, reason="r", valid_for_hours=72)
        assert record.declaration.valid_until - record.declaration.valid_from == dt.timedelta(hours=72)


class TestRevocation:
    @pytest.mark.parametrize("revoker", [ANNE, BERND], ids=["the declaring side", "the approving side"])
    def test_either_side_revokes_at_once(self, registry, clock, ledger, default_policy, revoker):
        record = registry.declare(ANNE, scope=SCOPE, reason="r", valid_for_hours=12)
        registry.approve(record.id, BERND)
        revoked = registry.revoke(record.id, revoker)
        assert revoked.status(clock()) == "revoked" and revoked.revoked_by == revoker
        assert not dr_to_frankfurt(default_policy, registry, clock).allowed
        assert steps(ledger) == ["declared", "approved", "activated", "revoked"]
        assert registry.declarations() == ()
        with pytest.raises(WrongState, match="already revoked"):
            registry.revoke(record.id, revoker)

    def test_a_pending_declaration_can_be_withdrawn(self, registry, clock):
        record = registry.declare(ANNE, scope=SCOPE, reason="r", valid_for_hours=12)
        assert registry.revoke(record.id, ANNE).status(clock()) == "revoked"


class TestScope:
    @pytest.mark.parametrize(("change", "param"), [
        ({"tenants": ["fr-nowhere"]}, "scope.tenants[0]"),
        ({"models": ["corridor-tiny", "gpt-9"]}, "scope.models[1]"),
        ({"markings": ["SECRETISH"]}, "scope.markings[0]"),
        ({"markings": ["SECRET"]}, "scope.markings[0]"),
        ({"directions": ["FR->US"]}, "scope.directions[0]"),
        ({"tenants": []}, "scope.tenants"),
        ({"residency": ["DE"]}, "scope.residency"),
    ], ids=["an unknown tenant", "an unknown model", "an unknown marking",
            "a marking above restricted", "a direction out of the corridor", "an empty list",
            "an unknown field"])
    def test_a_bad_scope_is_refused_naming_the_field(self, registry, change, param):
        with pytest.raises(InvalidDeclaration) as info:
            registry.declare(ANNE, scope={**SCOPE, **change}, reason="r", valid_for_hours=1)
        assert info.value.param == param

    def test_a_missing_reason_is_refused(self, registry):
        with pytest.raises(InvalidDeclaration) as info:
            registry.declare(ANNE, scope=SCOPE, reason="  ", valid_for_hours=1)
        assert info.value.param == "reason"

    @pytest.mark.parametrize(("tenant", "marking", "model", "pool"), [
        ("fr-health", "PUBLIC", "corridor-tiny", "de-frankfurt"),
        ("fr-interior", "PUBLIC", "corridor-tiny", "de-frankfurt"),
        ("fr-interior", "DR", "minilm", "de-frankfurt"),
        ("de-federal-it", "VS-NfD", "corridor-tiny", "fr-paris"),
    ], ids=["another tenant", "another marking", "another model", "the other direction"])
    def test_nothing_outside_the_scope_crosses(self, registry, clock, default_policy, tenant, marking,
                                               model, pool):
        record = registry.declare(ANNE, scope=SCOPE, reason="r", valid_for_hours=12)
        registry.approve(record.id, BERND)
        workload = Workload.create(tenant, marking, model=model)
        decision = default_policy.decide(workload, pool, at=clock(), declarations=registry.declarations())
        assert not decision.allowed and decision.declaration is None


class TestDurability:
    def test_declarations_survive_a_restart_and_an_expiry_while_down_is_logged_at_start(
            self, tmp_path, ledger, clock, default_policy):
        path = tmp_path / "home" / "crisis.json"
        first = CrisisRegistry(default_policy, ledger, path, clock=clock)
        kept = first.declare(ANNE, scope=SCOPE, reason="kept", valid_for_hours=24)
        first.approve(kept.id, BERND)
        lapsing = first.declare(BERND, scope={**SCOPE, "directions": ["DE->FR"], "tenants": ["de-federal-it"],
                                              "markings": ["VS-NfD"]}, reason="lapsing", valid_for_hours=1)
        first.approve(lapsing.id, ANNE)
        clock.advance(hours=2)
        second = CrisisRegistry(default_policy, ledger, path, clock=clock).start()
        try:
            assert second.get(kept.id).status(clock()) == "active"
            assert second.get(lapsing.id).status(clock()) == "expired"
            assert [d.id for d in second.declarations()] == [kept.id]
            assert steps(ledger, lapsing.id)[-1] == "expired"
        finally:
            second.stop()

    def test_an_unreadable_store_refuses_to_start(self, tmp_path, ledger, default_policy):
        path = tmp_path / "crisis.json"
        path.write_text(json.dumps({"declarations": [{"id": 7}]}))
        with pytest.raises(CrisisStoreError, match="crisis.json"):
            CrisisRegistry(default_policy, ledger, path)

    def test_the_ledger_step_is_written_before_the_store_changes(self, tmp_path, clock, default_policy):
        class FailingLedger:
            def append_many(self, drafts):
                raise OSError("disk full")

        path = tmp_path / "crisis.json"
        registry = CrisisRegistry(default_policy, FailingLedger(), path, clock=clock)
        with pytest.raises(OSError):
            registry.declare(ANNE, scope=SCOPE, reason="r", valid_for_hours=1)
        assert registry.list() == [] and not path.exists()


def test_listeners_hear_every_change_and_a_woken_pass_runs_once_per_burst(registry, clock):
    import logging

    from scheduler.periodic import Periodic

    passes = []
    healer = Periodic(lambda: passes.append(clock()), 3600, "test-heal", logging.getLogger(__name__),
                      "heal failed")
    registry.subscribe(healer.wake)
    healer.start()
    try:
        record = registry.declare(ANNE, scope=SCOPE, reason="r", valid_for_hours=1)
        registry.approve(record.id, BERND)
        registry.revoke(record.id, BERND)
        deadline = time.monotonic() + 5
        while not passes and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert 1 <= len(passes) <= 3, "three changes woke the healer, folded into at most 3 passes"
    finally:
        healer.stop()


def test_a_policy_with_a_shorter_maximum_bounds_the_window(tmp_path, ledger):
    import yaml
    from policies import default_bundle_path, load_bundle

    document = yaml.safe_load(default_bundle_path().read_text())
    document["settings"]["crisis_max_hours"] = 6
    policy = Policy(load_bundle("short.yaml", text=yaml.safe_dump(document)))
    registry = CrisisRegistry(policy, ledger, None)
    with pytest.raises(InvalidDeclaration, match="at most 6"):
        registry.declare(ANNE, scope=SCOPE, reason="r", valid_for_hours=7)
