"""Proofs served by the ledger from its stored subtree hashes (SQLite and PostgreSQL), over random indexes and sizes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger_backends import BACKENDS, ledger_database
from scheduler.ledger import Ledger, LedgerEntryDraft, ProofError, merkle

SIZE = 700
PROPERTY = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module", params=BACKENDS)
def log(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    home: Path = tmp_path_factory.mktemp("proofs")
    with Ledger.open(home, database=ledger_database(request, request.param)) as ledger:
        items = ledger.append_many(LedgerEntryDraft(kind="routing", detail={"seq": i}) for i in range(SIZE))
        leaves = [bytes.fromhex(item["leaf_hash"]) for item in items]
        roots = [merkle.root_from_leaf_hashes(leaves[:n]) for n in range(SIZE + 1)]
        yield ledger, leaves, roots


def _path(proof: dict, key: str) -> list[bytes]:
    return [bytes.fromhex(h) for h in proof[key]]


def test_stored_roots_equal_the_roots_recomputed_from_all_leaves(log) -> None:
    ledger, _, roots = log
    assert [ledger.root_hash(n) for n in range(SIZE + 1)] == [root.hex() for root in roots]


@PROPERTY
@given(st.data())
def test_every_served_inclusion_proof_verifies_and_every_alteration_fails(log, data: st.DataObject) -> None:
    ledger, leaves, roots = log
    size = data.draw(st.integers(1, SIZE))
    index = data.draw(st.integers(0, size - 1))
    path = _path(ledger.inclusion_proof(index, size), "inclusion_path")
    assert path == merkle.inclusion_proof(index, leaves[:size])
    merkle.verify_inclusion(index, size, leaves[index], path, roots[size])

    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "index", "size"]))
    args = [index, size, leaves[index], path, roots[size]]
    if how == "flip":
        assume(path)
        which, bit = data.draw(st.integers(0, len(path) - 1)), data.draw(st.integers(0, 255))
        altered = bytearray(path[which])
        altered[bit // 8] ^= 1 << (bit % 8)
        args[3] = [*path[:which], bytes(altered), *path[which + 1 :]]
    elif how == "truncate":
        assume(path)
        args[3] = path[:-1]
    elif how == "extend":
        args[3] = [*path, data.draw(st.binary(min_size=32, max_size=32))]
    elif how == "index":
        args[0] = data.draw(st.integers(0, SIZE).filter(lambda other: other != index))
    else:
        other = data.draw(st.integers(1, SIZE).filter(lambda other: other != size))
        assume(index >= other or merkle.inclusion_proof(index, leaves[:other]) != path)
        args[1], args[4] = other, roots[other]
    with pytest.raises(ProofError):
        merkle.verify_inclusion(*args)


@PROPERTY
@given(st.data())
def test_every_served_consistency_proof_verifies_and_every_alteration_fails(log, data: st.DataObject) -> None:
    ledger, leaves, roots = log
    second = data.draw(st.integers(1, SIZE))
    first = data.draw(st.integers(1, second))
    path = _path(ledger.consistency_proof(first, second), "consistency_path")
    assert path == merkle.consistency_proof(first, leaves[:second])
    merkle.verify_consistency(first, second, path, roots[first], roots[second])

    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "first", "second"]))
    args = [first, second, path, roots[first], roots[second]]
    if how == "flip":
        assume(path)
        which, bit = data.draw(st.integers(0, len(path) - 1)), data.draw(st.integers(0, 255))
        altered = bytearray(path[which])
        altered[bit // 8] ^= 1 << (bit % 8)
        args[2] = [*path[:which], bytes(altered), *path[which + 1 :]]
    elif how == "truncate":
        assume(path)
        args[2] = path[:-1]
    elif how == "extend":
        args[2] = [*path, data.draw(st.binary(min_size=32, max_size=32))]
    elif how == "first":
        other = data.draw(st.integers(0, SIZE).filter(lambda other: other != first))
        assume(not 0 < other <= second or merkle.consistency_proof(other, leaves[:second]) != path)
        args[0], args[3] = other, roots[other]
    else:
        other = data.draw(st.integers(0, SIZE).filter(lambda other: other != second))
        assume(not 0 < first <= other or merkle.consistency_proof(first, leaves[:other]) != path)
        args[1], args[4] = other, roots[other]
    with pytest.raises(ProofError):
        merkle.verify_consistency(*args)
