"""An independent RFC 6962 implementation, written from the RFC text, checks the ledger.

Nothing here comes from ``scheduler.ledger``'s hashing or proof code: MTH,
PATH and PROOF/SUBPROOF are the recursive definitions of RFC 6962 section 2.1
over the leaf *bytes*; verification follows RFC 9162 sections 2.1.3.2 and
2.1.4.2; the leaf bytes are the canonical JSON described in DESIGN.md, written
here with ``json.dumps``; tree head signatures are checked with the raw
Ed25519 primitive. Only the ledger's public API is called.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scheduler.ledger import Ledger, LedgerEntryDraft


def HASH(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def MTH(D: list[bytes]) -> bytes:
    """RFC 6962 2.1: the Merkle Tree Hash of the list of data entries D."""
    n = len(D)
    if n == 0:
        return HASH(b"")
    if n == 1:
        return HASH(b"\x00" + D[0])
    k = largest_power_of_two_below(n)
    return HASH(b"\x01" + MTH(D[:k]) + MTH(D[k:]))


def PATH(m: int, D: list[bytes]) -> list[bytes]:
    """RFC 6962 2.1.1: the audit path of leaf m in the tree of D."""
    n = len(D)
    if n == 1:
        return []
    k = largest_power_of_two_below(n)
    if m < k:
        return PATH(m, D[:k]) + [MTH(D[k:])]
    return PATH(m - k, D[k:]) + [MTH(D[:k])]


def SUBPROOF(m: int, D: list[bytes], b: bool) -> list[bytes]:
    """RFC 6962 2.1.2."""
    n = len(D)
    if m == n:
        return [] if b else [MTH(D)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return SUBPROOF(m, D[:k], b) + [MTH(D[k:])]
    return SUBPROOF(m - k, D[k:], False) + [MTH(D[:k])]


def PROOF(m: int, D: list[bytes]) -> list[bytes]:
    """RFC 6962 2.1.2: the consistency proof from the first m entries to all of D."""
    return SUBPROOF(m, D, True)


def accepts_inclusion(leaf_index: int, tree_size: int, leaf_hash: bytes, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = HASH(b"\x01" + p + r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = HASH(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def accepts_consistency(first: int, second: int, path: list[bytes], first_hash: bytes, second_hash: bytes) -> bool:
    """RFC 9162 2.1.4.2, step by step (first == second: empty path, equal roots)."""
    if first == second:
        return not path and first_hash == second_hash
    if not path or first == 0 or first > second:
        return False
    if first & (first - 1) == 0:
        path = [first_hash, *path]
    fn, sn = first - 1, second - 1
    while fn % 2 == 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr = HASH(b"\x01" + c + fr)
            sr = HASH(b"\x01" + c + sr)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = HASH(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0


def leaf_bytes(entry: dict) -> bytes:
    """DESIGN.md: sorted keys, separators ',' and ':', UTF-8, no ASCII escaping."""
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signature_verifies(head: dict, public_key: dict) -> bool:
    raw = base64.b64decode(public_key["public_key"])
    if hashlib.sha256(raw).hexdigest() != public_key["key_id"] or head["key_id"] != public_key["key_id"]:
        return False
    signed = leaf_bytes({k: head[k] for k in ("tree_size", "root_hash", "timestamp", "key_id")})
    try:
        Ed25519PublicKey.from_public_bytes(raw).verify(base64.b64decode(head["signature"]), signed)
    except Exception:
        return False
    return True


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


@pytest.fixture(scope="module")
def ledger_state(tmp_path_factory: pytest.TempPathFactory):
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
    ledger = Ledger.open(home)
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
