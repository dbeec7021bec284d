"""The regulator's document: every marking, flag and rule with its source, pools, equivalences."""

import datetime as dt

from policies import load_bundle
from policies.bundle import default_bundle_path
from policies.document import document, satisfying_pools
from policies.markings import catalogue, caveat_catalogue

from policy_bundles import base, build, pool

DAY = dt.date(2026, 11, 28)


def test_the_document_names_every_marking_caveat_flag_and_rule_with_its_source():
    bundle = load_bundle(default_bundle_path())
    text = document(bundle, today=DAY)
    for marking in catalogue():
        assert f"`{marking}`" in text
    for caveat in caveat_catalogue():
        assert f"`{caveat}`" in text
    for flag in ("health", "personal", "sensitive"):
        assert f"- `{flag}` —" in text
    for rule in bundle.requirements:
        assert f"### `{rule.id}`" in text and f"> {rule.source}" in text
    for eq in bundle.equivalences.accreditations:
        assert eq.source in text
    assert bundle.digest() in text and "## Crisis rules" in text and "legacy marking" in text


def test_the_document_says_which_pools_satisfy_each_rule_today():
    bundle = load_bundle(default_bundle_path())
    rules = {r.id: r for r in bundle.requirements}
    assert satisfying_pools(bundle, rules["restreint-ue-de"], DAY) == ["de-frankfurt"]
    assert satisfying_pools(bundle, rules["health-de"], DAY) == ["de-frankfurt", "de-berlin"]
    assert satisfying_pools(bundle, rules["dr-national"], DAY) == ["fr-paris"]
    assert satisfying_pools(bundle, rules["dr-national"], dt.date(2032, 1, 1)) == []


def test_an_expired_accreditation_and_a_type_1_attestation_do_not_satisfy():
    document_ = base()
    document_["pools"].append(pool("de-potsdam", "DE", "bsi-c5:type-1"))
    document_["pools"].append(pool("de-cottbus", "DE", "bsi-c5", until=dt.date(2020, 1, 1)))
    bundle = build(document_)
    rule = next(r for r in bundle.requirements if r.id == "health-de")
    assert satisfying_pools(bundle, rule, DAY) == ["de-frankfurt", "de-berlin"]
    assert "EXPIRED" in document(bundle, today=DAY)


def test_the_document_is_deterministic_for_a_bundle_and_a_day():
    bundle = load_bundle(default_bundle_path())
    assert document(bundle, today=DAY) == document(bundle, today=DAY)
