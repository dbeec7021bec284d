"""The rulebook's rules, one table row per case; each row names the rule that must fire."""

import datetime as dt
from typing import NamedTuple

import pytest

from policies import Policy, ReasonCode as R, Workload
from policies.markings import parse_marking

from policy_bundles import NOW, base, declaration, policy, pool


class Case(NamedTuple):
    tenant: str
    marking: str
    pool: str
    allowed: bool
    fired: set  # {(code, rule)} that must be exactly the reasons
    flags: str = ""
    model: str | None = "tiny"
    caveats: str = ""


CASES = {
    "DR of a French ministry is allowed on the DR-homologated Paris pool":
        Case("fr-interior", "DR", "fr-paris", True, set()),
    "DR is refused on Lyon by dr-national because Lyon lacks dr-homologation":
        Case("fr-interior", "DR", "fr-lyon", False, {(R.MISSING_ACCREDITATION, "dr-national")}),
    "DR is refused in Frankfurt by residency and by dr-national (it stays in France)":
        Case("fr-interior", "DR", "de-frankfurt", False,
             {(R.RESIDENCY, "residency"), (R.WRONG_JURISDICTION, "dr-national")}),
    "VS-NfD of the German federal IT provider is allowed in Frankfurt":
        Case("de-federal-it", "VS-NfD", "de-frankfurt", True, set()),
    "VS-NfD is refused in Berlin by vsnfd-national because Berlin lacks vsa-approval":
        Case("de-federal-it", "VS-NfD", "de-berlin", False, {(R.MISSING_ACCREDITATION, "vsnfd-national")}),
    "VS-NfD is refused in Paris by residency and by vsnfd-national":
        Case("de-federal-it", "VS-NfD", "fr-paris", False,
             {(R.RESIDENCY, "residency"), (R.WRONG_JURISDICTION, "vsnfd-national")}),
    "health data of a French hospital is allowed on the HDS-certified Paris pool":
        Case("fr-health", "PUBLIC", "fr-paris", True, set()),
    "health data is refused on Lyon by health-fr because Lyon is not HDS-certified":
        Case("fr-health", "PUBLIC", "fr-lyon", False, {(R.MISSING_ACCREDITATION, "health-fr")}),
    "German health data needs a C5 Type 2 attestation (health-de), and Berlin has one":
        Case("de-health", "PUBLIC", "de-berlin", True, set()),
    "health data flagged on a request applies the French rule to a French pool":
        Case("eu-agency", "PUBLIC", "fr-lyon", False, {(R.MISSING_ACCREDITATION, "health-fr")},
             flags="health"),
    "French health data needs hds even on a German pool its residency allows (health-fr)":
        Case("eu-agency", "PUBLIC", "de-frankfurt", False, {(R.MISSING_ACCREDITATION, "health-fr")},
             flags="health"),
    "sensitive French data is refused in a German pool by sensitive-secnumcloud":
        Case("eu-agency", "PUBLIC", "de-frankfurt", False,
             {(R.MISSING_ACCREDITATION, "sensitive-secnumcloud")}, flags="sensitive"),
    "sensitive data is allowed on a SecNumCloud pool":
        Case("eu-agency", "PUBLIC", "fr-lyon", True, set(), flags="sensitive"),
    "sensitive data of a German tenant is not bound by the French SecNumCloud rule":
        Case("de-federal-it", "PUBLIC", "de-berlin", True, set(), flags="sensitive"),
    "personal data may be processed in either EEA jurisdiction (personal-eu)":
        Case("eu-agency", "PUBLIC", "de-berlin", True, set(), flags="personal"),
    "RESTREINT UE is allowed in Frankfurt, which holds what VS-NfD needs there":
        Case("eu-agency", "RESTREINT UE", "de-frankfurt", True, set()),
    "RESTREINT UE is allowed in Paris, which holds what DR needs there":
        Case("eu-agency", "RESTREINT UE", "fr-paris", True, set()),
    "RESTREINT UE is refused in Berlin by restreint-ue-de because Berlin lacks vsa-approval":
        Case("eu-agency", "RESTREINT UE", "de-berlin", False,
             {(R.MISSING_ACCREDITATION, "restreint-ue-de")}),
    "RESTREINT UE is refused in Lyon by restreint-ue-fr because Lyon lacks dr-homologation":
        Case("eu-agency", "RESTREINT UE", "fr-lyon", False,
             {(R.MISSING_ACCREDITATION, "restreint-ue-fr")}),
    "NATO RESTRICTED is refused in Berlin by nato-restricted-de because Berlin lacks vsa-approval":
        Case("eu-agency", "NATO RESTRICTED", "de-berlin", False,
             {(R.MISSING_ACCREDITATION, "nato-restricted-de")}),
    "NATO RESTRICTED is refused in Lyon by nato-restricted-fr because Lyon lacks dr-homologation":
        Case("eu-agency", "NATO RESTRICTED", "fr-lyon", False,
             {(R.MISSING_ACCREDITATION, "nato-restricted-fr")}),
    "NATO RESTRICTED is allowed in Frankfurt":
        Case("eu-agency", "NATO RESTRICTED", "de-frankfurt", True, set()),
    "a Spécial France caveat keeps data out of Germany though the residency allows it":
        Case("eu-agency", "PUBLIC", "de-frankfurt", False,
             {(R.CAVEAT_NATIONAL_ONLY, "caveat-national-only")}, caveats="Spécial France"),
    "a Spécial France caveat runs in France":
        Case("eu-agency", "PUBLIC", "fr-lyon", True, set(), caveats="SPECIAL FRANCE"),
    "a German release restriction keeps data out of France":
        Case("eu-agency", "RESTREINT UE", "fr-paris", False,
             {(R.CAVEAT_NATIONAL_ONLY, "caveat-national-only")}, caveats="NUR FÜR DEUTSCHE"),
    "SECRET is refused by classified-never even on the best French pool":
        Case("fr-interior", "SECRET", "fr-paris", False,
             {(R.CLASSIFIED_NEVER, "classified-never"), (R.MARKING_NOT_ALLOWED_FOR_TENANT, "tenant-marking"),
              (R.MODEL_NOT_ALLOWED_FOR_MARKING, "model-allowed")}),
    "GEHEIM is refused by classified-never even with no model named":
        Case("de-federal-it", "GEHEIM", "de-frankfurt", False,
             {(R.CLASSIFIED_NEVER, "classified-never"), (R.MARKING_NOT_ALLOWED_FOR_TENANT, "tenant-marking")},
             model=None),
    "a marking the tenant may not send is refused by tenant-marking":
        Case("fr-interior", "RESTREINT UE", "fr-paris", False,
             {(R.MARKING_NOT_ALLOWED_FOR_TENANT, "tenant-marking")}),
    "a model the tenant may not use is refused by model-allowed":
        Case("fr-interior", "PUBLIC", "fr-paris", False, {(R.MODEL_NOT_ALLOWED, "model-allowed")},
             model="other"),
    "a model not allowed for the marking is refused by model-allowed":
        Case("eu-agency", "RESTREINT UE", "fr-paris", False,
             {(R.MODEL_NOT_ALLOWED_FOR_MARKING, "model-allowed")}, model="other"),
    "an unknown model is refused by model-allowed":
        Case("eu-agency", "PUBLIC", "fr-paris", False, {(R.UNKNOWN_MODEL, "model-allowed")},
             model="gpt-9"),
    "an unknown tenant is refused by tenant-marking":
        Case("nobody", "PUBLIC", "fr-paris", False, {(R.UNKNOWN_TENANT, "tenant-marking")}),
    "an unknown pool is refused by pool-known":
        Case("eu-agency", "PUBLIC", "us-east", False, {(R.UNKNOWN_POOL, "pool-known")}),
}


def reasons(decision):
    return {(r.code, r.rule) for r in decision.reasons}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_rule(case: Case):
    workload = Workload.create(case.tenant, case.marking, data_flags=case.flags, model=case.model,
                               caveats=case.caveats)
    decision = policy().decide(workload, case.pool, at=NOW)
    assert reasons(decision) == case.fired
    assert decision.allowed is case.allowed
    assert decision.declaration is None


def expiring(pool_index: int, accreditation: str, until: dt.date) -> Policy:
    document = base()
    for item in document["pools"][pool_index]["accreditations"]:
        if item["id"] == accreditation:
            item["valid_until"] = until
    return policy(document)


def test_an_expired_accreditation_counts_as_absent_and_says_it_expired():
    expired = expiring(0, "dr-homologation", dt.date(2026, 1, 31))
    decision = expired.decide(Workload.create("fr-interior", "DR", model="tiny"), "fr-paris", at=NOW)
    assert not decision.allowed
    assert reasons(decision) == {(R.EXPIRED_ACCREDITATION, "dr-national")}
    assert decision.reasons[0].details["valid_until"] == "2026-01-31"
    assert "held it until 2026-01-31" in decision.reasons[0].message
    assert decision.pool == "fr-paris"


def test_an_accreditation_is_valid_through_its_last_day_and_not_after():
    last_day = NOW.date()
    p = expiring(0, "hds", last_day)
    workload = Workload.create("fr-health", "PUBLIC", model="tiny")
    late_that_day = NOW.replace(hour=23, minute=59, second=59)
    assert p.decide(workload, "fr-paris", at=late_that_day).allowed
    next_day = late_that_day + dt.timedelta(seconds=1)
    assert reasons(p.decide(workload, "fr-paris", at=next_day)) == {(R.EXPIRED_ACCREDITATION, "health-fr")}


def test_an_equivalent_accreditation_satisfies_the_requirement():
    document = base()
    document["equivalences"]["accreditations"] = [
        {"accreditation": "secnumcloud-3.2", "satisfied_by": ["eucs-high-plus"], "source": "test"}]
    document["pools"][3]["accreditations"].append({"id": "eucs-high-plus", "valid_until": dt.date(2099, 1, 1)})
    workload = Workload.create("eu-agency", "PUBLIC", data_flags="sensitive", model="tiny")
    assert policy(document).decide(workload, "de-berlin", at=NOW).allowed
    assert not policy(document).decide(workload, "de-frankfurt", at=NOW).allowed


class TestAutarky:
    DIGEST = "sha256:" + "ab" * 32

    def autarky(self, digest=None):
        document = base()
        document["settings"] = {"autarky": True}
        if digest:
            document["models"][0]["digest"] = digest
        return policy(document)

    def test_an_unpinned_model_is_refused_by_model_pinned(self):
        decision = self.autarky().decide(Workload.create("eu-agency", "PUBLIC", model="tiny"), "fr-paris", at=NOW)
        assert reasons(decision) == {(R.MODEL_NOT_PINNED, "model-pinned")}

    def test_a_digest_that_does_not_match_the_pin_is_refused_by_model_pinned(self):
        workload = Workload.create("eu-agency", "PUBLIC", model="tiny", model_digest="sha256:" + "cd" * 32)
        decision = self.autarky(self.DIGEST).decide(workload, "fr-paris", at=NOW)
        assert reasons(decision) == {(R.MODEL_DIGEST_MISMATCH, "model-pinned")}

    def test_a_workload_without_a_digest_is_refused_in_autarky_mode(self):
        workload = Workload.create("eu-agency", "PUBLIC", model="tiny")
        assert reasons(self.autarky(self.DIGEST).decide(workload, "fr-paris", at=NOW)) == {
            (R.MODEL_DIGEST_MISMATCH, "model-pinned")}

    def test_a_matching_digest_is_allowed(self):
        workload = Workload.create("eu-agency", "PUBLIC", model="tiny", model_digest=self.DIGEST)
        assert self.autarky(self.DIGEST).decide(workload, "fr-paris", at=NOW).allowed

    def test_outside_autarky_a_pinned_digest_still_refuses_a_different_artifact(self):
        document = base()
        document["models"][0]["digest"] = self.DIGEST
        workload = Workload.create("eu-agency", "PUBLIC", model="tiny", model_digest="sha256:" + "00" * 32)
        assert reasons(policy(document).decide(workload, "fr-paris", at=NOW)) == {
            (R.MODEL_DIGEST_MISMATCH, "model-pinned")}


class TestFailClosed:
    def test_an_exception_inside_evaluation_denies_with_evaluation_error(self):
        broken = Workload(tenant="fr-interior", marking=None)  # type: ignore[arg-type]
        decision = policy().decide(broken, "fr-paris", at=NOW)
        assert not decision.allowed
        assert reasons(decision) == {(R.EVALUATION_ERROR, "evaluation")}
        assert "AttributeError" in decision.reasons[0].message

    def test_a_naive_decision_time_denies_with_evaluation_error(self):
        workload = Workload.create("fr-interior", "DR", model="tiny")
        decision = policy().decide(workload, "fr-paris", at=NOW.replace(tzinfo=None))
        assert reasons(decision) == {(R.EVALUATION_ERROR, "evaluation")}

    def test_decide_all_denies_every_pool_when_planning_fails(self):
        broken = Workload(tenant="fr-interior", marking=None)  # type: ignore[arg-type]
        evaluation = policy().decide_all(broken, at=NOW)
        assert len(evaluation.decisions) == 4 and not evaluation.allowed
        assert evaluation.tally() == {"EVALUATION_ERROR": 4}


class TestCrisisCrossing:
    def with_declaration(self, *, equivalence=True, **overrides):
        document = base()
        document["declarations"] = [declaration(**overrides)]
        if not equivalence:
            document["equivalences"]["markings"] = []
        return policy(document)

    workload = Workload.create("fr-interior", "DR", model="tiny")

    def test_an_active_declaration_lets_dr_cross_to_a_vs_nfd_approved_pool_and_names_itself(self):
        decision = self.with_declaration().decide(self.workload, "de-frankfurt", at=NOW)
        assert decision.allowed and decision.reasons == ()
        assert decision.declaration == "crisis-1"

    def test_crossed_dr_must_meet_its_home_rules_and_the_german_rules_of_its_equivalent_vs_nfd(self):
        decision = self.with_declaration().decide(self.workload, "de-berlin", at=NOW)
        assert reasons(decision) == {(R.MISSING_ACCREDITATION, "dr-national"),
                                     (R.MISSING_ACCREDITATION, "vsnfd-national")}
        home = next(r for r in decision.reasons if r.rule == "dr-national")
        assert home.details["accreditation"] == "dr-homologation or its declared equivalent vsa-approval"

    def test_an_allowed_crossing_names_the_crisis_equivalences_it_relied_on(self):
        decision = self.with_declaration().decide(self.workload, "de-frankfurt", at=NOW)
        relied = {(r.rule, r.accreditation, r.held, r.equivalence, r.crisis_only) for r in decision.relied_on}
        assert relied == {("dr-national", "secnumcloud-3.2", "bsi-c5", True, True),
                          ("dr-national", "dr-homologation", "vsa-approval", True, True),
                          ("vsnfd-national", "bsi-c5", "bsi-c5", False, False),
                          ("vsnfd-national", "vsa-approval", "vsa-approval", False, False)}
        assert decision.rules == ["dr-national", "vsnfd-national"]

    @pytest.mark.parametrize("missing", ["secnumcloud-3.2", "dr-homologation"])
    def test_without_an_accreditation_equivalence_a_home_accreditation_fails_with_no_equivalence(self, missing):
        document = base()
        document["declarations"] = [declaration()]
        document["equivalences"]["accreditations"] = [
            eq for eq in document["equivalences"]["accreditations"] if eq["accreditation"] != missing]
        decision = policy(document).decide(self.workload, "de-frankfurt", at=NOW)
        assert reasons(decision) == {(R.NO_EQUIVALENCE, "dr-national")}
        assert decision.reasons[0].details["accreditation"] == missing
        assert f"no equivalent there of {missing}" in decision.reasons[0].message

    def test_a_crisis_only_equivalence_does_not_count_outside_a_crossing(self):
        document = base()
        document["pools"].append(pool("de-potsdam", "DE", "secnumcloud-3.2", "vsa-approval"))
        workload = Workload.create("eu-agency", "RESTREINT UE", model="tiny")
        decision = policy(document).decide(workload, "de-potsdam", at=NOW)
        assert reasons(decision) == {(R.MISSING_ACCREDITATION, "restreint-ue-de")}

    def test_a_permanent_equivalence_counts_outside_a_crossing_but_only_for_its_rules(self):
        document = base()
        document["pools"].append(pool("de-potsdam", "DE", "secnumcloud-3.2", "vsa-approval"))
        document["equivalences"]["accreditations"].append(
            {"accreditation": "bsi-c5", "satisfied_by": ["secnumcloud-3.2"], "rules": ["restreint-ue-de"],
             "source": "test"})
        p = policy(document)
        assert p.decide(Workload.create("eu-agency", "RESTREINT UE", model="tiny"), "de-potsdam", at=NOW).allowed
        nato = p.decide(Workload.create("eu-agency", "NATO RESTRICTED", model="tiny"), "de-potsdam", at=NOW)
        assert reasons(nato) == {(R.MISSING_ACCREDITATION, "nato-restricted-de")}

    def test_german_vs_nfd_crosses_to_paris_through_the_declared_equivalences(self):
        scope = {"tenants": ["de-federal-it"], "markings": ["VS-NfD"], "models": ["tiny"],
                 "directions": ["DE->FR"]}
        p = self.with_declaration(scope=scope)
        workload = Workload.create("de-federal-it", "VS-NfD", model="tiny")
        paris = p.decide(workload, "fr-paris", at=NOW)
        assert paris.allowed and paris.declaration == "crisis-1"
        assert {(r.accreditation, r.held) for r in paris.relied_on if r.equivalence} == {
            ("bsi-c5", "secnumcloud-3.2"), ("vsa-approval", "dr-homologation")}
        assert reasons(p.decide(workload, "fr-lyon", at=NOW)) == {
            (R.MISSING_ACCREDITATION, "vsnfd-national"), (R.MISSING_ACCREDITATION, "dr-national")}

    def test_a_declaration_moves_flagged_data_only_when_it_names_the_flag(self):
        scope = {"tenants": ["fr-health"], "markings": ["PUBLIC"], "models": ["tiny"], "directions": ["FR->DE"]}
        workload = Workload.create("fr-health", "PUBLIC", model="tiny")
        unnamed = self.with_declaration(scope=scope).decide(workload, "de-frankfurt", at=NOW)
        assert reasons(unnamed) == {(R.DATA_FLAG_NOT_DECLARED, "declaration-scope"), (R.RESIDENCY, "residency"),
                                    (R.MISSING_ACCREDITATION, "health-fr")}
        assert unnamed.reasons[0].details["flag"] == "health"
        named = self.with_declaration(scope={**scope, "data_flags": ["health"]}).decide(
            workload, "de-frankfurt", at=NOW)
        assert reasons(named) == {(R.NO_EQUIVALENCE, "health-fr")}

    def test_a_caveated_workload_never_crosses_even_under_a_declaration_naming_it(self):
        workload = Workload.create("fr-interior", "DR", model="tiny", caveats="SF")
        decision = self.with_declaration().decide(workload, "de-frankfurt", at=NOW)
        assert not decision.allowed and decision.declaration is None
        assert {(R.CAVEAT_NATIONAL_ONLY, "caveat-national-only"), (R.RESIDENCY, "residency")} <= reasons(decision)
        assert self.with_declaration().decide(workload, "fr-paris", at=NOW).allowed

    def test_a_pool_at_home_is_allowed_without_naming_the_declaration(self):
        decision = self.with_declaration().decide(self.workload, "fr-paris", at=NOW)
        assert decision.allowed and decision.declaration is None

    def test_without_a_bilateral_marking_equivalence_nothing_crosses(self):
        decision = self.with_declaration(equivalence=False).decide(self.workload, "de-frankfurt", at=NOW)
        assert reasons(decision) == {(R.NO_EQUIVALENCE, "dr-national")}
        assert decision.reasons[0].details["missing"] == "DR"

    def test_a_declaration_approved_by_one_side_only_stays_inactive(self):
        one_side = [{"operator": "claire", "jurisdiction": "FR", "at": NOW - dt.timedelta(minutes=5)}]
        p = self.with_declaration(approvals=one_side)
        assert p.bundle.declarations[0].status(NOW) == "pending"
        assert reasons(p.decide(self.workload, "de-frankfurt", at=NOW)) == {
            (R.RESIDENCY, "residency"), (R.WRONG_JURISDICTION, "dr-national")}

    @pytest.mark.parametrize("at", [NOW - dt.timedelta(hours=2), NOW + dt.timedelta(hours=23)],
                             ids=["before its window opens", "when its window has closed"])
    def test_a_declaration_outside_its_window_lets_nothing_cross(self, at):
        decision = self.with_declaration().decide(self.workload, "de-frankfurt", at=at)
        assert reasons(decision) == {(R.RESIDENCY, "residency"), (R.WRONG_JURISDICTION, "dr-national")}

    def test_an_approval_given_after_the_decision_time_does_not_count(self):
        late = [{"operator": "bernd", "jurisdiction": "DE", "at": NOW + dt.timedelta(minutes=5)}]
        assert not self.with_declaration(approvals=late).decide(self.workload, "de-frankfurt", at=NOW).allowed

    def test_a_revoked_declaration_lets_nothing_cross(self):
        p = self.with_declaration(revoked_at=NOW - dt.timedelta(minutes=1))
        assert p.bundle.declarations[0].status(NOW) == "revoked"
        assert not p.decide(self.workload, "de-frankfurt", at=NOW).allowed

    @pytest.mark.parametrize("scope_change", [
        {"tenants": ["eu-agency"]}, {"markings": ["PUBLIC"]}, {"models": ["other"]},
        {"directions": ["DE->FR"]}],
        ids=["another tenant", "another marking", "another model", "the other direction"])
    def test_a_declaration_scoped_to_something_else_lets_nothing_cross(self, scope_change):
        scope = {**declaration()["scope"], **scope_change}
        decision = self.with_declaration(scope=scope).decide(self.workload, "de-frankfurt", at=NOW)
        assert not decision.allowed and (R.RESIDENCY, "residency") in reasons(decision)

    def test_a_declaration_held_outside_the_bundle_is_honoured(self):
        from policies.loading import validate_document
        from policies import Declaration
        runtime = validate_document(declaration(), Declaration, "api")
        decision = policy().decide(self.workload, "de-frankfurt", at=NOW, declarations=[runtime])
        assert decision.allowed and decision.declaration == "crisis-1"

    def test_classified_data_never_crosses_even_under_a_declaration(self):
        scope = {**declaration()["scope"], "markings": ["DR", "SECRET"]}
        workload = Workload.create("fr-interior", "SECRET", model="tiny")
        decision = self.with_declaration(scope=scope).decide(workload, "de-frankfurt", at=NOW)
        assert (R.CLASSIFIED_NEVER, "classified-never") in reasons(decision)


def test_decide_all_tallies_reason_codes_per_pool():
    evaluation = policy().decide_all(Workload.create("fr-interior", "DR", model="tiny"), at=NOW)
    assert [d.pool for d in evaluation.allowed] == ["fr-paris"]
    assert evaluation.tally() == {"RESIDENCY": 2, "WRONG_JURISDICTION": 2, "MISSING_ACCREDITATION": 1}
    assert evaluation.summary() == "1/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION"


def test_decisions_carry_the_policy_digest_and_a_stable_id():
    p = policy()
    workload = Workload.create("fr-interior", "DR", model="tiny", id="req-1")
    first, again = p.decide(workload, "fr-paris", at=NOW), p.decide(workload, "fr-paris", at=NOW)
    assert first.policy_digest == p.digest
    assert first == again and first.id == again.id and first.id.startswith("dec_")
    assert first.id != p.decide(workload, "fr-lyon", at=NOW).id


def test_the_default_bundle_keeps_dr_in_paris_and_denies_every_german_pool_by_residency(default_policy):
    evaluation = default_policy.decide_all(Workload.create("fr-interior", "DR", model="corridor-tiny"))
    by_pool = {d.pool: d for d in evaluation.decisions}
    assert by_pool["fr-paris"].allowed
    for pool in ("de-frankfurt", "de-berlin"):
        assert "RESIDENCY" in by_pool[pool].codes


def test_marking_spelling_does_not_change_the_decision(default_policy):
    a = Workload.create("de-federal-it", "VS-NUR FÜR DEN DIENSTGEBRAUCH", model="corridor-tiny")
    b = Workload(tenant="de-federal-it", marking=parse_marking("VS-NfD"), model="corridor-tiny")
    assert a == b
    assert default_policy.decide(a, "de-frankfurt", at=NOW) == default_policy.decide(b, "de-frankfurt", at=NOW)


class TestAttestation:
    def test_a_type_1_c5_attestation_does_not_satisfy_the_type_2_rule_for_german_health_data(self):
        document = base()
        document["pools"].append(pool("de-potsdam", "DE", "bsi-c5:type-1"))
        decision = policy(document).decide(Workload.create("de-health", "PUBLIC", model="tiny"), "de-potsdam", at=NOW)
        assert reasons(decision) == {(R.MISSING_ACCREDITATION, "health-de")}
        assert decision.reasons[0].details["accreditation"] == "bsi-c5 (type-2 attestation)"

    def test_a_type_1_c5_attestation_still_counts_where_no_type_is_required(self):
        document = base()
        document["pools"].append(pool("de-potsdam", "DE", "bsi-c5:type-1", "vsa-approval"))
        workload = Workload.create("de-federal-it", "VS-NfD", model="tiny")
        assert policy(document).decide(workload, "de-potsdam", at=NOW).allowed


class TestMinimumMarking:
    def with_minimum(self, tenant_index: int, minimum: str) -> Policy:
        document = base()
        document["tenants"][tenant_index]["minimum_marking"] = minimum
        return policy(document)

    def test_a_workload_below_the_tenants_minimum_is_decided_at_the_minimum_and_says_so(self):
        p = self.with_minimum(0, "DR")  # fr-interior
        decision = p.decide(Workload.create("fr-interior", "PUBLIC", model="tiny"), "fr-lyon", at=NOW)
        assert reasons(decision) == {(R.MISSING_ACCREDITATION, "dr-national")}
        assert decision.effective_marking == "DR"
        assert (decision.marking_raised.declared, decision.marking_raised.by,
                decision.marking_raised.source) == ("PUBLIC", "tenant", "fr-interior")
        assert decision.facts()["workload"]["marking_raised"]["declared"] == "PUBLIC"

    def test_the_evaluation_reports_the_effective_marking_too(self):
        evaluation = self.with_minimum(0, "DR").decide_all(
            Workload.create("fr-interior", "PUBLIC", model="tiny"), at=NOW)
        assert evaluation.effective_marking == "DR" and evaluation.marking_raised.declared == "PUBLIC"
        assert evaluation.to_json()["marking_raised"]["minimum"] == "DR"
        assert [d.pool for d in evaluation.allowed] == ["fr-paris"]

    def test_a_workload_at_or_above_the_minimum_is_unchanged(self):
        workload = Workload.create("fr-interior", "DR", model="tiny")
        decision = self.with_minimum(0, "DR").decide(workload, "fr-paris", at=NOW)
        assert decision.allowed and decision.marking_raised is None and decision.workload == workload

    def test_an_api_keys_minimum_raises_the_workload_before_the_decision(self):
        from policies import apply_minimum_marking
        workload = apply_minimum_marking(Workload.create("de-federal-it", "PUBLIC", model="tiny"),
                                         "VS-NfD", key_id="key_42")
        decision = policy().decide(workload, "de-berlin", at=NOW)
        assert reasons(decision) == {(R.MISSING_ACCREDITATION, "vsnfd-national")}
        assert decision.marking_raised.by == "key" and decision.marking_raised.source == "key_42"

    def test_a_second_raise_keeps_the_marking_the_caller_declared(self):
        workload = Workload.create("eu-agency", "PUBLIC").at_minimum("RESTREINT UE", by="key", source="k")
        again = workload.at_minimum("RESTREINT UE", by="tenant", source="eu-agency")
        assert again is workload and workload.raised.declared == "PUBLIC"
