"""The bundle archive (write-once, by digest), decision facts, declarations as data, and replay."""

import datetime as dt
import json
import os

import pytest

from policies import Declaration, Policy, Workload
from policies.archive import BundleArchive, replay
from policies.canonical import canonical_json, sha256_hex
from policies.exceptions import ArchiveConflictError, ArchiveDigestMismatch, BundleNotArchived

from policy_bundles import NOW, base, build, declaration, policy


@pytest.fixture
def archive(tmp_path) -> BundleArchive:
    return BundleArchive(tmp_path / "bundles")


class TestArchive:
    def test_a_bundle_is_stored_as_its_canonical_form_under_its_digest(self, archive):
        bundle = build(base())
        digest = archive.put(bundle)
        stored = archive.path(digest).read_bytes()
        assert digest == bundle.digest() == "sha256:" + sha256_hex(stored)
        assert stored == canonical_json(bundle.model_dump(mode="json"))
        assert archive.path(digest).name == digest.removeprefix("sha256:") + ".json"
        assert archive.digests() == [digest] and digest in archive

    def test_a_stored_bundle_reads_back_equal_and_compiles_to_the_same_policy(self, archive):
        bundle = build(base())
        digest = archive.put(bundle)
        assert archive.get(digest) == bundle
        assert archive.policy(digest).digest == digest

    def test_storing_the_same_bundle_again_is_a_no_op(self, archive):
        bundle = build(base())
        assert archive.put(bundle) == archive.put(bundle)
        assert len(list(archive.directory.iterdir())) == 1

    def test_different_bytes_under_an_existing_digest_are_refused(self, archive):
        bundle = build(base())
        path = archive.path(bundle.digest())
        path.write_bytes(b"{}")
        with pytest.raises(ArchiveConflictError, match="never overwritten"):
            archive.put(bundle)
        assert path.read_bytes() == b"{}"

    def test_an_altered_archived_bundle_is_detected_on_read(self, archive):
        digest = archive.put(build(base()))
        path = archive.path(digest)
        os.chmod(path, 0o644)
        document = json.loads(path.read_bytes())
        document["pools"][1]["accreditations"].append({"id": "dr-homologation", "valid_until": "2099-12-31",
                                                       "issuer": None, "attestation": None})
        path.write_bytes(canonical_json(document))
        with pytest.raises(ArchiveDigestMismatch) as info:
            archive.get(digest)
        assert info.value.digest == digest and info.value.got != digest

    def test_an_unknown_digest_is_not_archived(self, archive):
        with pytest.raises(BundleNotArchived):
            archive.get("sha256:" + "0" * 64)

    def test_a_malformed_digest_is_a_value_error_that_shows_the_form(self, archive):
        with pytest.raises(ValueError, match="want 'sha256:' and 64 lowercase hex digits"):
            archive.path("md5:abc")


class TestDeclarationAsData:
    def test_a_declaration_round_trips_through_json(self):
        original = Declaration.from_json(json.loads(json.dumps(
            declaration(scope_changes={"data_flags": ["health"]}), default=str)))
        again = Declaration.from_json(json.loads(json.dumps(original.to_json())))
        assert again == original and again.scope.data_flags == ["health"]

    def test_a_declaration_without_data_flags_moves_none(self):
        assert Declaration.from_json(json.loads(json.dumps(declaration(), default=str))).scope.data_flags == []


class TestFacts:
    def test_a_denied_decision_names_the_rules_that_fired(self):
        decision = policy().decide(Workload.create("fr-interior", "DR", model="tiny"), "fr-lyon", at=NOW)
        facts = decision.facts()
        assert facts["allowed"] is False and facts["rules"] == ["dr-national"]
        assert facts["reasons"] == [{"code": "MISSING_ACCREDITATION", "rule": "dr-national",
                                     "details": {"subject": "DR data", "accreditation": "dr-homologation"}}]
        assert facts["accreditations"] == []

    def test_an_allowed_crossing_names_its_declaration_and_equivalences(self):
        document = base()
        document["declarations"] = [declaration()]
        decision = policy(document).decide(Workload.create("fr-interior", "DR", model="tiny", id="req-7"),
                                           "de-frankfurt", at=NOW)
        facts = decision.facts()
        assert facts["declaration"] == "crisis-1" and facts["workload_id"] == "req-7"
        assert {"rule": "dr-national", "accreditation": "dr-homologation", "held": "vsa-approval",
                "valid_until": "2099-12-31",
                "equivalence": {"accreditation": "dr-homologation", "satisfied_by": "vsa-approval",
                                "crisis_only": True}} in facts["accreditations"]
        assert facts["policy"] == {"name": "test", "version": "1", "digest": decision.policy_digest}
        assert json.loads(json.dumps(facts)) == facts

    def test_the_decision_id_is_unchanged_for_a_workload_without_new_facts(self):
        decision = policy().decide(Workload.create("fr-interior", "DR", model="tiny"), "fr-paris", at=NOW)
        assert decision.workload.to_json() == decision.workload.summary()


class TestReplay:
    def test_replay_with_the_archived_bundle_and_the_declaration_of_the_time_matches(self, archive):
        document = base()
        p = policy(document)
        runtime = Declaration.from_json(json.loads(json.dumps(declaration(), default=str)))
        decision = p.decide(Workload.create("fr-interior", "DR", model="tiny"), "de-frankfurt", at=NOW,
                            declarations=[runtime])
        assert decision.allowed
        digest = archive.put(p.bundle)
        result = replay(json.loads(json.dumps(decision.facts())), archive.policy(digest),
                        [Declaration.from_json(runtime.to_json())])
        assert result.matches and result.differences == () and result.replayed == decision

    def test_replay_without_the_declaration_reports_the_changed_verdict(self):
        p = policy()
        runtime = Declaration.from_json(json.loads(json.dumps(declaration(), default=str)))
        decision = p.decide(Workload.create("fr-interior", "DR", model="tiny"), "de-frankfurt", at=NOW,
                            declarations=[runtime])
        result = replay(decision.facts(), p)
        assert not result.matches and not result.verdict_matches and not result.rules_match
        assert "declaration crisis-1 was not given to the replay" in result.differences

    def test_replay_with_an_altered_bundle_reports_the_digest_and_the_verdict(self):
        decision = policy().decide(Workload.create("fr-interior", "DR", model="tiny"), "fr-lyon", at=NOW)
        altered = base()
        altered["pools"][1]["accreditations"].append({"id": "dr-homologation", "valid_until": dt.date(2099, 1, 1)})
        result = replay(decision.facts(), policy(altered))
        assert not result.matches and not result.verdict_matches
        assert result.differences[0].startswith("policy digest: recorded sha256:")

    def test_replay_keeps_a_raised_marking(self):
        document = base()
        document["tenants"][0]["minimum_marking"] = "DR"
        p = Policy(build(document))
        decision = p.decide(Workload.create("fr-interior", "PUBLIC", model="tiny"), "fr-paris", at=NOW)
        result = replay(decision.facts(), p)
        assert result.matches and result.replayed.marking_raised.declared == "PUBLIC"
