"""RFC 6962 hashing and proofs: the published test vectors, then properties over random trees."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from scheduler.ledger import merkle
from scheduler.ledger.exceptions import ProofError, ProofInputError, RootMismatchError

VECTORS = Path(__file__).resolve().parents[2] / "testdata" / "rfc6962"
INCLUSION_CASES = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY_CASES = sorted((VECTORS / "consistency").rglob("*.json"))


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value) if value else b""


def _case_id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


def test_every_vector_file_is_collected() -> None:
    assert len(INCLUSION_CASES) + len(CONSISTENCY_CASES) == len(list(VECTORS.rglob("*.json"))) > 150


@pytest.mark.parametrize("path", INCLUSION_CASES, ids=_case_id)
def test_inclusion_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b64(p) for p in case["proof"] or []]
    args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), proof, _b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY_CASES, ids=_case_id)
def test_consistency_vector(path: Path) -> None:
    case = json.loads(path.read_text())
    proof = [_b64(p) for p in case["proof"] or []]
    args = (case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


@pytest.mark.parametrize("path", [p for p in INCLUSION_CASES if p.name == "happy-path.json"], ids=_case_id)
def test_generated_inclusion_proof_matches_the_vector_when_the_leaves_are_known(path: Path) -> None:
    # The reference vectors are built on the RFC 6962 test leaves.
    case = json.loads(path.read_text())
    leaves = [merkle.leaf_hash(bytes.fromhex(h)) for h in RFC_TEST_LEAVES]
    if case["treeSize"] > len(leaves) or merkle.leaf_hash(b"") != leaves[0]:
        pytest.skip("not built on the RFC test leaves")
    assert _b64(case["leafHash"]) == leaves[case["leafIdx"]]
    got = merkle.inclusion_proof(case["leafIdx"], leaves[: case["treeSize"]])
    assert got == [_b64(p) for p in case["proof"] or []]
    assert merkle.root_from_leaf_hashes(leaves[: case["treeSize"]]) == _b64(case["root"])


RFC_TEST_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
"""The eight leaves used by the RFC 6962 reference tests (hex of the leaf bytes)."""

RFC_TEST_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
"""Roots of the first 1..8 RFC test leaves, as published with the reference implementation."""


def test_roots_of_the_rfc_test_leaves() -> None:
    leaves = [merkle.leaf_hash(bytes.fromhex(h)) for h in RFC_TEST_LEAVES]
    for size, want in enumerate(RFC_TEST_ROOTS, 1):
        assert merkle.root_from_leaf_hashes(leaves[:size]).hex() == want


def test_empty_tree_root_is_the_hash_of_the_empty_string() -> None:
    assert merkle.root_from_leaf_hashes([]) == hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT


def test_leaf_and_node_hashes_use_the_domain_prefixes() -> None:
    assert merkle.leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert merkle.node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()


@pytest.mark.parametrize(("n", "k"), [(2, 1), (3, 2), (4, 2), (5, 4), (8, 4), (9, 8), (1025, 1024)])
def test_split_point_is_the_largest_power_of_two_below_n(n: int, k: int) -> None:
    assert merkle.split_point(n) == k


def test_proof_inputs_are_checked_with_got_and_want() -> None:
    leaf = merkle.leaf_hash(b"x")
    with pytest.raises(ProofInputError, match="got leaf index 3, want 0 <= index < tree size 3"):
        merkle.verify_inclusion(3, 3, leaf, [], leaf)
    with pytest.raises(ProofInputError, match="leaf hash: got 31 bytes, want 32"):
        merkle.verify_inclusion(0, 1, leaf[:31], [], leaf)
    with pytest.raises(ProofInputError, match="got 0 hashes, want 2"):
        merkle.verify_inclusion(0, 3, leaf, [], leaf)
    with pytest.raises(ProofInputError, match="got first=0"):
        merkle.verify_consistency(0, 4, [leaf], merkle.EMPTY_ROOT, leaf)
    with pytest.raises(ProofInputError, match="got first=5 > second=4"):
        merkle.verify_consistency(5, 4, [leaf], leaf, leaf)


def test_a_wrong_root_raises_the_distinct_root_mismatch_error() -> None:
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(5)]
    proof = merkle.inclusion_proof(2, leaves)
    with pytest.raises(RootMismatchError) as info:
        merkle.verify_inclusion(2, 5, leaves[2], proof, b"\x00" * 32)
    assert info.value.want == b"\x00" * 32
    assert info.value.got == merkle.root_from_leaf_hashes(leaves)


def test_compact_range_reports_each_subtree_as_it_completes() -> None:
    compact = merkle.CompactRange()
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(8)]
    completed = [[(level, index) for level, index, _ in compact.append(h)] for h in leaves]
    assert completed == [[], [(1, 0)], [], [(1, 1), (2, 0)], [], [(1, 2)], [], [(1, 3), (2, 1), (3, 0)]]
    assert compact.hashes == [merkle.root_from_leaf_hashes(leaves)]
    assert merkle.CompactRange.subtrees(13) == [(3, 0), (2, 2), (0, 12)]


# Properties over random trees. One list of leaf hashes serves every size.
LEAVES = [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(600)]
ROOTS = [merkle.root_from_leaf_hashes(LEAVES[:n]) for n in range(len(LEAVES) + 1)]
FAST = settings(max_examples=150, deadline=None)


def _flip(proof: list[bytes], which: int, bit: int) -> list[bytes]:
    altered = list(proof)
    value = bytearray(altered[which])
    value[bit // 8] ^= 1 << (bit % 8)
    altered[which] = bytes(value)
    return altered


@st.composite
def index_and_size(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, len(LEAVES)))
    return draw(st.integers(0, size - 1)), size


@st.composite
def first_and_second(draw: st.DrawFn) -> tuple[int, int]:
    second = draw(st.integers(1, len(LEAVES)))
    return draw(st.integers(1, second)), second


@FAST
@given(index_and_size())
def test_every_inclusion_proof_verifies(case: tuple[int, int]) -> None:
    index, size = case
    proof = merkle.inclusion_proof(index, LEAVES[:size])
    merkle.verify_inclusion(index, size, LEAVES[index], proof, ROOTS[size])


@FAST
@given(first_and_second())
def test_every_consistency_proof_verifies(case: tuple[int, int]) -> None:
    first, second = case
    proof = merkle.consistency_proof(first, LEAVES[:second])
    merkle.verify_consistency(first, second, proof, ROOTS[first], ROOTS[second])


@FAST
@given(index_and_size(), st.data())
def test_every_altered_inclusion_proof_fails(case: tuple[int, int], data: st.DataObject) -> None:
    index, size = case
    proof = merkle.inclusion_proof(index, LEAVES[:size])
    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "index", "size"]))
    args = [index, size, LEAVES[index], proof, ROOTS[size]]
    if how == "flip":
        assume(proof)
        args[3] = _flip(proof, data.draw(st.integers(0, len(proof) - 1)), data.draw(st.integers(0, 255)))
    elif how == "truncate":
        assume(proof)
        args[3] = proof[:-1]
    elif how == "extend":
        args[3] = [*proof, data.draw(st.binary(min_size=32, max_size=32))]
    elif how == "index":
        other = data.draw(st.integers(0, len(LEAVES)))
        assume(other != index)
        args[0] = other
    else:
        other = data.draw(st.integers(1, len(LEAVES)))
        assume(other != size)
        args[1], args[4] = other, ROOTS[other]
        assume(index >= other or merkle.inclusion_proof(index, LEAVES[:other]) != proof)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(*args)


@FAST
@given(first_and_second(), st.data())
def test_every_altered_consistency_proof_fails(case: tuple[int, int], data: st.DataObject) -> None:
    first, second = case
    proof = merkle.consistency_proof(first, LEAVES[:second])
    how = data.draw(st.sampled_from(["flip", "truncate", "extend", "first", "second"]))
    args = [first, second, proof, ROOTS[first], ROOTS[second]]
    if how == "flip":
        assume(proof)
        args[2] = _flip(proof, data.draw(st.integers(0, len(proof) - 1)), data.draw(st.integers(0, 255)))
    elif how == "truncate":
        assume(proof)
        args[2] = proof[:-1]
    elif how == "extend":
        args[2] = [*proof, data.draw(st.binary(min_size=32, max_size=32))]
    elif how == "first":
        other = data.draw(st.integers(0, len(LEAVES)))
        assume(other != first)
        args[0], args[3] = other, ROOTS[other]
        assume(not 0 < other <= second or merkle.consistency_proof(other, LEAVES[:second]) != proof)
    else:
        other = data.draw(st.integers(0, len(LEAVES)))
        assume(other != second)
        args[1], args[4] = other, ROOTS[other]
        assume(not 0 < first <= other or merkle.consistency_proof(first, LEAVES[:other]) != proof)
    with pytest.raises(ProofError):
        merkle.verify_consistency(*args)


@FAST
@given(index_and_size())
def test_proof_ranges_decompose_into_few_complete_subtrees(case: tuple[int, int]) -> None:
    # Proof generation reads O(log n) stored hashes: every range splits into at most log2(n)+1 subtrees.
    index, size = case
    ranges = merkle.inclusion_path_ranges(index, size)
    keys = [key for start, end in ranges for key in merkle.perfect_subtrees(start, end)]
    assert len(keys) <= 2 * size.bit_length()
