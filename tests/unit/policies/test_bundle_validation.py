"""Loading bundles: every class of bad input gets an error naming file, path and problem."""

import datetime as dt

import pytest

from policies import BundleError, load_bundle
from policies.bundle import default_bundle_path

from policy_bundles import NOW, base, build, declaration, to_yaml


def issues_of(document=None, *, text=None):
    with pytest.raises(BundleError) as info:
        if text is not None:
            load_bundle("bad.yaml", text=text)
        else:
            build(document)
    return [str(issue) for issue in info.value.issues]


def test_the_default_bundle_is_valid_and_has_a_stable_digest():
    first, second = load_bundle(default_bundle_path()), load_bundle(default_bundle_path())
    assert first.digest() == second.digest()
    assert first.digest().startswith("sha256:") and len(first.digest()) == 7 + 64
    assert {p.id for p in first.pools} == {"fr-paris", "fr-lyon", "de-frankfurt", "de-berlin"}
    assert {t.id for t in first.tenants} == {"fr-health", "fr-interior", "de-federal-it",
                                              "de-health", "eu-agency"}
    assert all(rule.source for rule in first.requirements)


def test_the_digest_ignores_formatting_but_not_content():
    document = base()
    text = to_yaml(document)
    reformatted = "# a comment\n" + text.replace("name: test", "name:    test")
    assert load_bundle("a.yaml", text=text).digest() == load_bundle("b.yaml", text=reformatted).digest()
    document["pools"][0]["site"] = "Paris 2"
    assert build(document).digest() != load_bundle("a.yaml", text=text).digest()


def test_a_misspelled_field_is_rejected_not_ignored():
    document = base()
    tenant = document["tenants"][0]
    tenant["residence"] = tenant.pop("residency")
    issues = issues_of(document)
    assert "test.yaml: tenants[0].residence: unknown field (not allowed here; check its spelling)" in issues
    assert "test.yaml: tenants[0].residency: required field is missing" in issues


def test_a_value_of_the_wrong_type_is_rejected_without_coercion():
    document = base()
    document["pools"][1]["gpu"]["count"] = "8"
    issues = issues_of(document)
    assert len(issues) == 1
    assert issues[0].startswith("test.yaml: pools[1].gpu.count: Input should be a valid integer")
    assert "got '8'" in issues[0]


def test_an_unknown_jurisdiction_is_rejected():
    document = base()
    document["pools"][0]["jurisdiction"] = "US"
    assert any(i.startswith("test.yaml: pools[0].jurisdiction: Input should be 'FR' or 'DE'")
               for i in issues_of(document))


def test_an_unknown_marking_in_a_tenant_names_its_path_and_the_known_markings():
    document = base()
    document["tenants"][0]["markings"] = ["PUBLIC", "DRR"]
    issues = issues_of(document)
    assert any(i.startswith("test.yaml: tenants[0].markings[1]: unknown marking 'DRR'; known markings: PUBLIC, DR")
               for i in issues)


def test_an_expired_accreditation_loads_because_expiry_is_a_decision_not_a_format_error():
    document = base()
    document["pools"][0]["accreditations"][0]["valid_until"] = dt.date(2020, 1, 1)
    assert build(document).pools[0].accreditations[0].valid_until == dt.date(2020, 1, 1)


def test_a_malformed_date_is_rejected():
    document = base()
    document["pools"][0]["accreditations"][0]["valid_until"] = "next year"
    assert any(i.startswith("test.yaml: pools[0].accreditations[0].valid_until:")
               for i in issues_of(document))


def test_cross_references_are_checked():
    document = base()
    document["tenants"][0]["models"] = ["tiny", "gpt-9"]
    document["tenants"][0]["default_marking"] = "VS-NfD"
    document["tenants"][0]["residency"] = ["DE"]
    issues = issues_of(document)
    assert "test.yaml: tenants[0].models[1]: unknown model 'gpt-9'; known: ['other', 'tiny']" in issues
    assert "test.yaml: tenants[0].default_marking: 'VS-NfD' is not among the tenant's markings" in issues
    assert "test.yaml: tenants[0].residency: must include the tenant's home jurisdiction 'FR'" in issues


def test_duplicate_ids_are_rejected():
    document = base()
    document["pools"].append(document["pools"][0])
    assert "test.yaml: pools[4].id: duplicate id 'fr-paris'" in issues_of(document)


def test_a_duplicate_yaml_key_is_rejected_not_overwritten():
    text = "name: a\nversion: '1'\nname: b\n"
    issues = issues_of(text=text)
    assert len(issues) == 1 and "found duplicate key 'name'" in issues[0]
    assert issues[0].startswith("bad.yaml: line 3, column 1:")


def test_a_yaml_syntax_error_names_the_line():
    issues = issues_of(text="name: [unclosed\nversion: '1'\n")
    assert issues[0].startswith("bad.yaml: line ")


def test_an_empty_file_is_rejected():
    assert issues_of(text="") == ["bad.yaml: expected a mapping at the top level, got an empty file"]


def test_a_missing_file_is_a_bundle_error():
    with pytest.raises(BundleError, match="cannot read file"):
        load_bundle("/nonexistent/bundle.yaml")


def test_a_requirement_needs_exactly_one_condition():
    document = base()
    document["requirements"][0]["when"] = {"marking": "DR", "data_flag": "health"}
    assert any(i.startswith("test.yaml: requirements[0].when: Value error, give exactly one of")
               for i in issues_of(document))


def test_a_marking_equivalence_must_pair_an_fr_and_a_de_marking():
    document = base()
    document["equivalences"]["markings"][0]["FR"] = "RESTREINT UE"
    assert "test.yaml: equivalences.markings[0].FR: 'RESTREINT UE' is not a FR marking" in issues_of(document)


def test_a_declaration_window_longer_than_the_maximum_is_rejected():
    document = base()
    document["declarations"] = [declaration(valid_until=NOW + dt.timedelta(hours=100))]
    assert "test.yaml: declarations[0].valid_until: window exceeds settings.crisis_max_hours (72 h)" \
        in issues_of(document)


def test_a_declarer_approving_their_own_declaration_is_rejected():
    document = base()
    document["declarations"] = [declaration(approvals=[
        {"operator": "anne", "jurisdiction": "FR", "at": NOW}])]
    assert "test.yaml: declarations[0].approvals[0]: the declarer cannot approve their own declaration" \
        in issues_of(document)


def test_a_declaration_needs_timezone_aware_times():
    document = base()
    document["declarations"] = [declaration(valid_from=NOW.replace(tzinfo=None))]
    assert any(i.startswith("test.yaml: declarations[0].valid_from:") for i in issues_of(document))


def test_every_problem_is_reported_at_once():
    document = base()
    document["pools"][0]["jurisdiction"] = "US"
    document["tenants"][1]["quotas"] = {"requests_per_minute": -1}
    assert len(issues_of(document)) == 2


class TestRestrictedFamilyCoverage:
    def test_a_restricted_marking_a_model_may_process_needs_a_rule_where_pools_are(self):
        document = base()
        document["models"][1]["markings"].append("NATO RESTRICTED")
        document["requirements"] = [r for r in document["requirements"] if r["id"] != "nato-restricted-fr"]
        issues = issues_of(document)
        assert any(i.startswith("test.yaml: models[1].markings[1]: NATO RESTRICTED may be processed by "
                                "model other but no requirement rule applies to it in FR (pools fr-paris, "
                                "fr-lyon)") for i in issues)
        assert any(i.startswith("test.yaml: tenants[4].markings[2]: NATO RESTRICTED may be sent by tenant "
                                "eu-agency") for i in issues)

    def test_a_rule_whose_jurisdictions_leave_one_out_states_that_the_marking_never_runs_there(self):
        document = base()
        document["requirements"] = [r for r in document["requirements"] if not r["id"].startswith("nato-")]
        document["equivalences"]["accreditations"] = []
        document["requirements"].append({"id": "nato-fr-only", "when": {"marking": "NATO RESTRICTED"},
                                         "jurisdictions": ["FR"], "accreditations": ["dr-homologation"],
                                         "source": "test"})
        assert build(document)

    def test_a_rule_for_data_of_the_other_origin_does_not_cover_a_tenants_marking(self):
        document = base()
        for rule in document["requirements"]:
            if rule["id"] == "restreint-ue-de":
                rule["when"]["origin"] = "DE"
        issues = issues_of(document)
        assert any("RESTREINT UE may be sent by tenant eu-agency but no requirement rule applies to it in DE"
                   in i for i in issues)

    def test_a_jurisdiction_without_pools_needs_no_rule(self):
        document = base()
        document["pools"] = [p for p in document["pools"] if p["jurisdiction"] == "FR"]
        document["requirements"] = [r for r in document["requirements"] if not r["id"].endswith("-de")]
        document["equivalences"]["accreditations"] = []
        assert build(document)

    def test_classified_markings_need_no_rule_because_they_never_run(self):
        document = base()
        document["tenants"][0]["markings"].append("SECRET")
        assert build(document)


class TestNewFields:
    def test_a_minimum_marking_must_be_one_of_the_tenants_markings(self):
        document = base()
        document["tenants"][0]["minimum_marking"] = "VS-NfD"
        assert "test.yaml: tenants[0].minimum_marking: 'VS-NfD' is not among the tenant's markings" \
            in issues_of(document)

    def test_a_default_marking_below_the_minimum_is_rejected_with_the_fix(self):
        document = base()
        document["tenants"][0]["minimum_marking"] = "DR"
        document["tenants"][0]["default_marking"] = "PUBLIC"
        assert ("test.yaml: tenants[0].default_marking: 'PUBLIC' is below the tenant's minimum_marking 'DR'; "
                "make the default at least 'DR'") in issues_of(document)

    def test_an_equivalence_must_name_existing_rules_and_not_itself(self):
        document = base()
        document["equivalences"]["accreditations"].append(
            {"accreditation": "hds", "satisfied_by": ["hds"], "rules": ["health-xx"], "source": "t"})
        issues = issues_of(document)
        assert any(i.startswith("test.yaml: equivalences.accreditations[4].rules[0]: unknown requirement rule "
                                "'health-xx'") for i in issues)
        assert "test.yaml: equivalences.accreditations[4].satisfied_by: 'hds' cannot be its own equivalent" \
            in issues

    def test_an_attestation_type_must_name_a_required_accreditation(self):
        document = base()
        document["requirements"][0]["attestation"] = {"bsi-c5": "type-2"}
        assert any(i.startswith("test.yaml: requirements[0].attestation.bsi-c5: 'bsi-c5' is not among")
                   for i in issues_of(document))

    def test_an_unknown_attestation_type_is_rejected(self):
        document = base()
        document["pools"][2]["accreditations"][0]["attestation"] = "type-3"
        assert any(i.startswith("test.yaml: pools[2].accreditations[0].attestation:") for i in issues_of(document))

    def test_a_misspelled_scope_field_is_rejected_not_ignored(self):
        document = base()
        document["declarations"] = [declaration(scope_changes={"data_flag": ["health"]})]
        assert "test.yaml: declarations[0].scope.data_flag: unknown field (not allowed here; check its spelling)" \
            in issues_of(document)


def test_every_equivalence_of_the_default_bundle_cites_its_source_and_says_when_it_applies():
    bundle = load_bundle(default_bundle_path())
    assert bundle.equivalences.accreditations
    for eq in bundle.equivalences.accreditations:
        assert eq.source and eq.crisis_only and eq.rules
