"""The six findings of issue 12, reproduced on the default bundle: each must stay fixed.

Modules that did not exist when the findings were filed are imported inside
the tests, so that each finding fails on its own against the old code.
"""

import datetime as dt

import pytest
import yaml

from policies import BundleError, Declaration, Policy, Workload, load_bundle
from policies.bundle import default_bundle_path
from policies.loading import validate_document



def build(document: dict):
    """Validate a bundle document as a file would be."""
    return load_bundle("issue12.yaml", text=yaml.safe_dump(document, sort_keys=False, allow_unicode=True))

NOW = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.timezone.utc)


def default_document() -> dict:
    return load_bundle(default_bundle_path()).model_dump(mode="json")


def declaration(tenant: str, marking: str, direction: str, *, model: str = "minilm", **scope) -> Declaration:
    declarer, approver = direction.split("->")
    return validate_document({
        "id": f"crisis-{tenant}", "reason": "issue 12",
        "declared_by": {"operator": "declarer", "jurisdiction": declarer},
        "scope": {"tenants": [tenant], "markings": [marking], "models": [model], "directions": [direction],
                  **scope},
        "valid_from": (NOW - dt.timedelta(hours=1)).isoformat(),
        "valid_until": (NOW + dt.timedelta(hours=1)).isoformat(),
        "approvals": [{"operator": "approver", "jurisdiction": approver,
                       "at": (NOW - dt.timedelta(minutes=30)).isoformat()}],
    }, Declaration, "test")


def by_pool(evaluation) -> dict:
    return {d.pool: d for d in evaluation.decisions}


class TestFinding1RestrictedMarkingsAreOneFamily:
    def test_restreint_ue_is_denied_on_lyon_and_berlin_with_missing_accreditation(self, default_policy):
        decisions = by_pool(default_policy.decide_all(
            Workload.create("eu-agency", "RESTREINT UE", model="corridor-tiny"), at=NOW))
        assert decisions["fr-lyon"].codes == ["MISSING_ACCREDITATION"]
        assert decisions["de-berlin"].codes == ["MISSING_ACCREDITATION"]
        assert decisions["fr-paris"].allowed and decisions["de-frankfurt"].allowed

    def test_nato_restricted_given_to_a_tenant_needs_what_the_national_level_needs(self):
        document = default_document()
        document["tenants"][4]["markings"].append("NATO RESTRICTED")  # eu-agency
        document["models"][0]["markings"].append("NATO RESTRICTED")  # corridor-tiny
        decisions = by_pool(Policy(build(document)).decide_all(
            Workload.create("eu-agency", "NATO RESTRICTED", model="corridor-tiny"), at=NOW))
        assert {p for p, d in decisions.items() if d.allowed} == {"fr-paris", "de-frankfurt"}

    def test_a_restricted_marking_a_tenant_may_send_without_a_rule_for_a_jurisdiction_is_a_bundle_error(self):
        document = default_document()
        document["tenants"][4]["markings"].append("NATO RESTRICTED")
        document["requirements"] = [r for r in document["requirements"] if r["id"] != "nato-restricted-de"]
        with pytest.raises(BundleError) as info:
            build(document)
        message = "\n".join(map(str, info.value.issues))
        assert "tenants[4].markings[2]: NATO RESTRICTED may be sent by tenant eu-agency" in message
        assert "no requirement rule applies to it in DE" in message

    def test_the_legacy_french_markings_stay_recognised_and_labelled(self):
        from policies import parse_marking
        assert parse_marking("Confidentiel Défense").legacy
        assert parse_marking("SECRET DEFENSE").id == "SECRET"
        assert "SECRET DEFENSE" in parse_marking("SECRET").legacy_aliases


class TestFinding2RulesFollowTheData:
    def test_a_public_declaration_for_fr_health_leaves_every_german_pool_denied(self, default_policy):
        crossing = declaration("fr-health", "PUBLIC", "FR->DE")
        decisions = by_pool(default_policy.decide_all(Workload.create("fr-health", "PUBLIC", model="minilm"),
                                                      at=NOW, declarations=[crossing]))
        for pool in ("de-frankfurt", "de-berlin"):
            assert not decisions[pool].allowed
            assert "DATA_FLAG_NOT_DECLARED" in decisions[pool].codes

    def test_a_public_declaration_for_de_health_leaves_paris_denied(self, default_policy):
        crossing = declaration("de-health", "PUBLIC", "DE->FR")
        decision = default_policy.decide(Workload.create("de-health", "PUBLIC", model="minilm"), "fr-paris",
                                         at=NOW, declarations=[crossing])
        assert not decision.allowed and "DATA_FLAG_NOT_DECLARED" in decision.codes

    def test_german_health_data_is_denied_on_paris_which_holds_no_c5_attestation(self, default_policy):
        crossing = declaration("de-health", "PUBLIC", "DE->FR", data_flags=["health", "personal"])
        decision = default_policy.decide(Workload.create("de-health", "PUBLIC", model="minilm"), "fr-paris",
                                         at=NOW, declarations=[crossing])
        assert not decision.allowed
        assert {(r.code, r.rule) for r in decision.reasons} == {("NO_EQUIVALENCE", "health-de")}

    def test_french_health_data_needs_hds_on_a_german_pool_even_when_the_flag_is_declared(self, default_policy):
        crossing = declaration("fr-health", "PUBLIC", "FR->DE", data_flags=["health", "personal"])
        decision = default_policy.decide(Workload.create("fr-health", "PUBLIC", model="minilm"), "de-frankfurt",
                                         at=NOW, declarations=[crossing])
        assert [(r.code, r.rule, r.details["accreditation"]) for r in decision.reasons] == [
            ("NO_EQUIVALENCE", "health-fr", "hds")]


class TestFinding3TheOwnersRulesCrossWithTheData:
    @pytest.mark.parametrize(("tenant", "marking", "direction", "pool", "held"), [
        ("fr-interior", "DR", "FR->DE", "de-frankfurt", {"secnumcloud-3.2", "dr-homologation"}),
        ("de-federal-it", "VS-NfD", "DE->FR", "fr-paris", {"bsi-c5", "vsa-approval"}),
    ], ids=["French DR in Frankfurt", "German VS-NfD in Paris"])
    def test_without_the_declared_accreditation_equivalences_the_crossing_fails(
            self, tenant, marking, direction, pool, held):
        document = default_document()
        document["equivalences"]["accreditations"] = []
        decision = Policy(build(document)).decide(Workload.create(tenant, marking, model="minilm"), pool, at=NOW,
                                                  declarations=[declaration(tenant, marking, direction)])
        assert not decision.allowed
        assert {r.code for r in decision.reasons} == {"NO_EQUIVALENCE"}
        assert {r.details["accreditation"] for r in decision.reasons} == held

    def test_the_readme_drill_crosses_through_cited_equivalences_and_names_them(self, default_policy):
        crossing = declaration("de-federal-it", "VS-NfD", "DE->FR")
        decision = default_policy.decide(Workload.create("de-federal-it", "VS-NfD", model="minilm"), "fr-paris",
                                         at=NOW, declarations=[crossing])
        assert decision.allowed and decision.declaration == crossing.id
        used = {(r.accreditation, r.held) for r in decision.relied_on if r.equivalence}
        assert used == {("bsi-c5", "secnumcloud-3.2"), ("vsa-approval", "dr-homologation")}
        sources = {e.accreditation: e for e in default_policy.bundle.equivalences.accreditations}
        assert sources["bsi-c5"].crisis_only and sources["bsi-c5"].source

    def test_removing_one_equivalence_fails_the_drill_naming_that_accreditation(self):
        document = default_document()
        document["equivalences"]["accreditations"] = [
            e for e in document["equivalences"]["accreditations"] if e["accreditation"] != "vsa-approval"]
        decision = Policy(build(document)).decide(
            Workload.create("de-federal-it", "VS-NfD", model="minilm"), "fr-paris", at=NOW,
            declarations=[declaration("de-federal-it", "VS-NfD", "DE->FR")])
        assert [(r.code, r.details["accreditation"]) for r in decision.reasons] == [
            ("NO_EQUIVALENCE", "vsa-approval")]


class TestFinding4FlagsBindWhomTheTextsBind:
    def test_sensitive_data_of_the_german_federal_it_provider_runs_in_germany(self, default_policy):
        decision = default_policy.decide(Workload.create("de-federal-it", "VS-NfD", data_flags="sensitive",
                                                         model="minilm"), "de-frankfurt", at=NOW)
        assert decision.allowed

    def test_the_personal_data_rule_cites_the_eea_and_chapter_v(self, default_policy):
        rule = next(r for r in default_policy.bundle.requirements if r.id == "personal-eu")
        assert "EEA" in rule.source and "Chapter V" in rule.source


class TestFinding5TheDeclaredMarkingIsChecked:
    def test_a_tenant_minimum_marking_stops_a_downgrade_to_public(self):
        document = default_document()
        document["tenants"][1]["minimum_marking"] = "DR"  # fr-interior
        document["tenants"][1]["default_marking"] = "DR"
        decisions = by_pool(Policy(build(document)).decide_all(
            Workload.create("fr-interior", "PUBLIC", model="minilm"), at=NOW))
        assert [p for p, d in decisions.items() if d.allowed] == ["fr-paris"]
        assert decisions["fr-lyon"].effective_marking == "DR"

    def test_a_marking_banner_above_the_declared_marking_is_found_in_the_text(self):
        from policies import parse_marking
        from policies.spillage import spillage_reason
        for text, banner in [("DIFFUSION RESTREINTE\nNote au ministre", "DR"),
                             ("VS – NUR FÜR DEN DIENSTGEBRAUCH\nLagebericht", "VS-NfD"),
                             ("Compte rendu RESTREINT UE/EU RESTRICTED", "RESTREINT UE")]:
            reason = spillage_reason(parse_marking("PUBLIC"), text)
            assert reason.code == "MARKING_SPILLAGE" and reason.details["banner"] == banner
            assert text not in reason.message


class TestFinding6DecisionsAreReplayable:
    def test_an_allowed_decision_names_rules_accreditations_and_the_bundle(self, default_policy):
        decision = default_policy.decide(Workload.create("fr-interior", "DR", model="minilm"), "fr-paris", at=NOW)
        facts = decision.facts()
        assert facts["rules"] == ["dr-national"]
        assert {(a["accreditation"], a["valid_until"]) for a in facts["accreditations"]} == {
            ("secnumcloud-3.2", "2031-12-31"), ("dr-homologation", "2031-12-31")}
        assert facts["policy"] == {"name": "corridor-default", "version": "2026.11",
                                   "digest": default_policy.digest}

    def test_the_bundle_is_kept_by_digest_and_the_decision_replays(self, default_policy, tmp_path):
        from policies.archive import BundleArchive, replay
        archive = BundleArchive(tmp_path)
        assert archive.put(default_policy.bundle) == default_policy.digest
        crossing = declaration("de-federal-it", "VS-NfD", "DE->FR")
        decision = default_policy.decide(Workload.create("de-federal-it", "VS-NfD", model="minilm"), "fr-paris",
                                         at=NOW, declarations=[crossing])
        result = replay(decision.facts(), archive.policy(default_policy.digest),
                        [Declaration.from_json(crossing.to_json())])
        assert result.matches, result.differences
