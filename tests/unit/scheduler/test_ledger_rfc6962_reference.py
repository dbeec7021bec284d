"""An independent RFC 6962 implementation, written from the RFC text, checks the ledger.

The reference lives in ``tests/rfc6962_reference.py`` and shares no code with
``scheduler.ledger``; only the ledger's public API is called here, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import hashlib

import pytest

from scheduler.ledger import Ledger, LedgerEntryDraft

from ledger_backends import BACKENDS, ledger_database
from rfc6962_reference import (HASH, MTH, PATH, PROOF, accepts_consistency, accepts_inclusion, leaf_bytes,
                               signature_verifies)


def test_the_reference_matches_the_rfc_example_shape() -> None:
    # RFC 6962 2.1.3: the tree of 7 leaves; PATH(3) is [c, g, l] and PROOF(3, D[7]) is [c, d, g, l].
    D = [bytes([i]) for i in range(7)]
    leaf = [HASH(b"\x00" + d) for d in D]
    g = HASH(b"\x01" + leaf[0] + leaf[1])
    i_ = HASH(b"\x01" + leaf[4] + leaf[5])
    l_ = HASH(b"\x01" + i_ + leaf[6])
    assert PATH(3, D) == [leaf[2], g, l_]
    assert PROOF(3, D) == [leaf[2], leaf[3], g, l_]
    assert accepts_inclusion(3, 7, leaf[3], PATH(3, D), MTH(D))
    assert accepts_consistency(3, 7, PROOF(3, D), MTH(D[:3]), MTH(D))


SIZE = 37
HEAD_SIZES = [1, 2, 5, 16, 17, 30]


@pytest.fixture(scope="module", params=BACKENDS)
def ledger_state(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    home = tmp_path_factory.mktemp("reference")
    drafts = [
        LedgerEntryDraft(
            kind=["placement", "routing", "violation", "security", "policy", "crisis"][i % 6],
            tenant=["fr-interior", "de-bund", "gesundheit-é"][i % 3],
            jurisdiction=["FR", "DE", None][i % 3],
            allowed=[True, False, None][i % 3],
            reasons=["RESIDENCY"] if i % 2 else [],
            detail={"seq": i, "note": "données sensibles ✓", "nested": {"b": [1, 2], "a": None}},
        )
        for i in range(SIZE)
    ]
    ledger = Ledger.open(home, database=ledger_database(request, request.param))
    done = 0
    for size in [*HEAD_SIZES, SIZE]:
        ledger.append_many(drafts[done:size])
        done = size
        ledger.latest_tree_head()
    state = {
        "entries": [ledger.get(i) for i in range(SIZE)],
        "heads": ledger.tree_heads(),
        "public_key": ledger.public_key(),
        "inclusion": {(m, n): ledger.inclusion_proof(m, n) for n in range(1, SIZE + 1) for m in range(n)},
        "consistency": {(m, n): ledger.consistency_proof(m, n) for n in range(1, SIZE + 1) for m in range(1, n + 1)},
        "roots": [ledger.root_hash(n) for n in range(SIZE + 1)],
        "export": list(ledger.export(tenant="de-bund", tree_size=SIZE)),
    }
    ledger.close()
    yield state


def _data(state: dict) -> list[bytes]:
    return [leaf_bytes(item["entry"]) for item in state["entries"]]


def test_leaf_hashes_are_sha256_of_0x00_and_the_canonical_entry(ledger_state: dict) -> None:
    for position, item in enumerate(ledger_state["entries"]):
        assert item["index"] == item["entry"]["index"] == position
        assert item["leaf_hash"] == HASH(b"\x00" + leaf_bytes(item["entry"])).hex()


def test_roots_equal_the_reference_mth_at_every_size(ledger_state: dict) -> None:
    D = _data(ledger_state)
    assert [MTH(D[:n]).hex() for n in range(SIZE + 1)] == ledger_state["roots"]
    assert ledger_state["roots"][0] == hashlib.sha256(b"").hexdigest()


def test_every_tree_head_has_the_reference_root_and_a_valid_signature(ledger_state: dict) -> None:
    D = _data(ledger_state)
    heads = ledger_state["heads"]
    assert [h["tree_size"] for h in heads] == [*HEAD_SIZES, SIZE]
    for head in heads:
        assert set(head) == {"tree_size", "root_hash", "timestamp", "key_id", "signature"}
        assert head["root_hash"] == MTH(D[: head["tree_size"]]).hex()
        assert signature_verifies(head, ledger_state["public_key"])
        forged = dict(head, tree_size=head["tree_size"] + 1)
        assert not signature_verifies(forged, ledger_state["public_key"])


def test_every_inclusion_proof_is_the_rfc_path_and_the_reference_accepts_it(ledger_state: dict) -> None:
    D = _data(ledger_state)
    for (m, n), proof in ledger_state["inclusion"].items():
        assert proof["leaf_index"] == m and proof["tree_size"] == n
        path = [bytes.fromhex(h) for h in proof["inclusion_path"]]
        assert path == PATH(m, D[:n]), (m, n)
        assert accepts_inclusion(m, n, HASH(b"\x00" + D[m]), path, MTH(D[:n])), (m, n)


def test_every_consistency_proof_is_the_rfc_proof_and_the_reference_accepts_it(ledger_state: dict) -> None:
    D = _data(ledger_state)
    for (m, n), proof in ledger_state["consistency"].items():
        assert proof["first"] == m and proof["second"] == n
        path = [bytes.fromhex(h) for h in proof["consistency_path"]]
        assert path == PROOF(m, D[:n]), (m, n)
        assert accepts_consistency(m, n, path, MTH(D[:m]), MTH(D[:n])), (m, n)


def test_a_filtered_export_proves_each_line_under_the_signed_root(ledger_state: dict) -> None:
    head = ledger_state["heads"][-1]
    lines = ledger_state["export"]
    assert [line["index"] for line in lines] == list(range(1, SIZE, 3))
    for line in lines:
        path = [bytes.fromhex(h) for h in line["inclusion_path"]]
        leaf = HASH(b"\x00" + leaf_bytes(line["entry"]))
        assert line["leaf_hash"] == leaf.hex()
        assert accepts_inclusion(line["index"], head["tree_size"], leaf, path, bytes.fromhex(head["root_hash"]))
