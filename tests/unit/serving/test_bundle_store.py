"""Bundles kept by digest on both backends (the folder in ``$CORRIDOR_HOME``, the embedded default,
and PostgreSQL), and ``corridor audit replay`` reading them from the database. The PostgreSQL
cases carry the ``postgres`` marker."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from policies import Policy, Workload
from policies.archive import archived_bytes
from policies.exceptions import ArchiveConflictError, ArchiveDigestMismatch, BundleNotArchived
from scheduler.bundle_store import open_bundle_archive
from scheduler.ledger import Ledger
from scheduler.ledger.decisions import decision_entry
from serving.cli import app

BACKENDS = ["files", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database(request):
    return request.getfixturevalue("postgres_url") if request.param == "postgres" else None


@pytest.fixture
def archive(tmp_path, database):
    opened = open_bundle_archive(tmp_path, database=database)
    yield opened
    opened.close()


def _other_policy(policy: Policy) -> Policy:
    return Policy(policy.bundle.model_copy(update={"version": policy.bundle.version + "-next"}))


def test_a_bundle_reads_back_as_the_exact_bytes_of_its_digest(archive, default_policy):
    digest = archive.put(default_policy.bundle)
    assert digest == default_policy.digest and digest in archive
    assert archive.get(digest) == default_policy.bundle
    assert archive.policy(digest).digest == digest
    _, data = archived_bytes(default_policy.bundle)
    if hasattr(archive, "read_bytes"):
        assert archive.read_bytes(digest) == data
    else:
        assert archive.path(digest).read_bytes() == data


def test_storing_again_is_a_no_op_and_every_digest_is_listed(archive, default_policy):
    other = _other_policy(default_policy)
    assert archive.put(default_policy.bundle) == archive.put(default_policy.bundle)
    archive.put(other.bundle)
    assert archive.digests() == sorted([default_policy.digest, other.digest])


def test_an_unknown_or_malformed_digest_is_not_archived(archive):
    assert ("sha256:" + "0" * 64) not in archive and "sha1:x" not in archive
    with pytest.raises(BundleNotArchived):
        archive.get("sha256:" + "0" * 64)
    with pytest.raises(ValueError, match="64 lowercase hex"):
        archive.get("sha256:xyz")


@pytest.mark.postgres
def test_altered_or_conflicting_bytes_in_the_database_are_refused(postgres_url, tmp_path, default_policy):
    import psycopg

    archive = open_bundle_archive(tmp_path, database=postgres_url)
    try:
        digest = archive.put(default_policy.bundle)
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("UPDATE policy_bundles SET data = convert_to(replace(convert_from(data, 'UTF8'), "
                       "'fr-paris', 'fr-pariz'), 'UTF8')")
        with pytest.raises(ArchiveDigestMismatch):
            archive.get(digest)
        with pytest.raises(ArchiveConflictError, match="never overwritten"):
            archive.put(default_policy.bundle)
    finally:
        archive.close()


@pytest.mark.postgres
def test_audit_replay_reads_the_bundles_from_the_database(postgres_url, tmp_path, default_policy):
    archive = open_bundle_archive(tmp_path, database=postgres_url)
    archive.put(default_policy.bundle)
    archive.close()
    allowed = default_policy.decide_all(Workload.create("fr-interior", "DR", model="corridor-tiny", id="req-1"))
    with Ledger.open(tmp_path) as ledger:
        ledger.append(decision_entry("routing", allowed.allowed[0], summary=allowed.summary()))
    from_folder = CliRunner().invoke(app, ["audit", "replay", "--home", str(tmp_path)])
    assert from_folder.exit_code == 1 and "cannot replay" in from_folder.output, "not in the folder"
    result = CliRunner().invoke(app, ["audit", "replay", "--home", str(tmp_path), "--database", postgres_url])
    assert result.exit_code == 0, result.output
    assert "1 of 1 decisions replayed identically, 0 differ" in result.output
