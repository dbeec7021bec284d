"""RFC 6962 / RFC 9162 Merkle tree hashing and proofs, as pure functions over bytes.

Hashes here are raw 32-byte SHA-256 digests; the wire form (lowercase hex)
belongs to the callers. Names follow RFC 9162 section 2.1:

- ``leaf_hash(d) = SHA-256(0x00 || d)``, ``node_hash(l, r) = SHA-256(0x01 || l || r)``;
- ``MTH(D[n])``: the empty tree hashes to ``SHA-256("")``; a tree of ``n > 1``
  leaves splits at ``k``, the largest power of two smaller than ``n``;
- ``PATH(m, D[n])`` is the inclusion proof of leaf ``m``, ``PROOF(m, D[n])``
  the consistency proof from the tree of size ``m``.

Proof *generation* is split so a store can answer it from O(log n) stored
hashes: :func:`inclusion_path_ranges` and :func:`consistency_path_ranges` name
the leaf ranges ``[start, end)`` whose MTH make up the proof,
:func:`perfect_subtrees` decomposes a range into complete (power-of-two
aligned) subtrees keyed ``(level, index)``, and :func:`range_hash` composes
the range's MTH from those. :class:`CompactRange` keeps the right edge of a
growing tree and reports each complete subtree as it completes.

Verification recomputes the root and compares; a wrong root raises
:class:`RootMismatchError`, malformed input :class:`ProofInputError`.

One module because it is one thing: RFC 6962 hashing and the two proofs share
the tree-splitting rule, and an auditor reads them side by side with the RFC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from scheduler.ledger.exceptions import ProofInputError, RootMismatchError

HASH_SIZE = 32
"""Bytes in a SHA-256 digest, the size of every leaf hash, node hash and root."""

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH of the empty tree: SHA-256 of the empty string."""

_sha256 = hashlib.sha256


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf): the hash of one leaf's bytes (for the ledger, canonical JSON)."""
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node from its two children."""
    return _sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (``n >= 2``): where MTH splits.

    >>> split_point(2), split_point(5), split_point(8)
    (1, 4, 4)
    """
    if n < 2:
        raise ProofInputError(f"split point: got n={n}, want n >= 2")
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The complete subtrees covering leaves ``[0, size)``: one per set bit of ``size``.

    ``hashes`` holds their roots, largest (leftmost) first. Appending a leaf
    merges equal-sized neighbours and returns each subtree completed by it as
    ``(level, index, hash)`` with ``level >= 1``: the subtree of leaves
    ``[index * 2**level, (index + 1) * 2**level)``.
    """

    __slots__ = ("size", "hashes")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ProofInputError(f"compact range: got size {size}, want >= 0")
        if len(hashes) != size.bit_count():
            raise ProofInputError(
                f"compact range of size {size}: got {len(hashes)} hashes, want {size.bit_count()}"
            )
        self.size = size
        self.hashes = list(hashes)

    @staticmethod
    def subtrees(size: int) -> list[tuple[int, int]]:
        """The ``(level, index)`` of the complete subtrees covering ``[0, size)``, leftmost first.

        >>> CompactRange.subtrees(6)
        [(2, 0), (1, 2)]
        """
        keys = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                keys.append((level, start >> level))
                start += 1 << level
        return keys

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add the leaf hash ``leaf`` at index ``size``; return the subtrees it completes."""
        index = self.size
        value = leaf
        level = 0
        completed = []
        hashes = self.hashes
        while index >> level & 1:
            value = node_hash(hashes.pop(), value)
            level += 1
            completed.append((level, index >> level, value))
        hashes.append(value)
        self.size = index + 1
        return completed

    def root(self) -> bytes:
        """MTH of leaves ``[0, size)``: the subtree roots folded from the right."""
        if not self.hashes:
            return EMPTY_ROOT
        hashes = self.hashes
        value = hashes[-1]
        for i in range(len(hashes) - 2, -1, -1):
            value = node_hash(hashes[i], value)
        return value

    def copy(self) -> CompactRange:
        """An independent copy (appending to it leaves this one unchanged)."""
        return CompactRange(self.size, self.hashes)


def root_from_leaf_hashes(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of the tree whose leaves have these leaf hashes, in order; O(n) time, O(log n) memory."""
    compact = CompactRange()
    for value in leaf_hashes:
        compact.append(value)
    return compact.root()


def inclusion_path_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges ``[start, end)`` whose MTH form PATH(index, D[0:size]), leaf side first.

    Precondition ``0 <= index < size``.

    >>> inclusion_path_ranges(2, 5)
    [(3, 4), (0, 2), (4, 5)]
    """
    if not 0 <= index < size:
        raise ProofInputError(f"inclusion proof: got index {index}, want 0 <= index < tree size {size}")
    ranges = []
    start, end = 0, size
    while end - start > 1:
        k = split_point(end - start)
        if index < start + k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            start += k
    ranges.reverse()
    return ranges


def consistency_path_ranges(first: int, second: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTH form PROOF(first, D[0:second]) = SUBPROOF(first, D[second], true).

    Precondition ``0 < first <= second`` (a proof from the empty tree is meaningless).

    >>> consistency_path_ranges(3, 7)
    [(2, 3), (3, 4), (0, 2), (4, 7)]
    """
    if not 0 < first <= second:
        raise ProofInputError(f"consistency proof: got first={first}, second={second}, want 0 < first <= second")
    ranges = []
    start, end, m, whole = 0, second, first, True
    while m != end - start:
        k = split_point(end - start)
        if m <= k:
            ranges.append((start + k, end))
            end = start + k
        else:
            ranges.append((start, start + k))
            m -= k
            start += k
            whole = False
    if not whole:
        ranges.append((start, end))
    ranges.reverse()
    return ranges


def perfect_subtrees(start: int, end: int) -> list[tuple[int, int]]:
    """Decompose ``[start, end)`` into complete subtrees ``(level, index)``, left to right.

    Precondition: ``[start, end)`` is a subtree of some RFC 6962 tree, i.e.
    ``start`` is a multiple of the smallest power of two >= ``end - start``
    (every range named by the ``*_path_ranges`` functions is).

    >>> perfect_subtrees(4, 7)
    [(1, 2), (0, 6)]
    """
    width = end - start
    if width < 1:
        raise ProofInputError(f"subtree range: got [{start}, {end}), want a non-empty range")
    keys = []
    offset = start
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            if offset & ((1 << level) - 1):
                raise ProofInputError(f"subtree range: got [{start}, {end}), want start aligned to its width")
            keys.append((level, offset >> level))
            offset += 1 << level
    return keys


def range_hash(start: int, end: int, subtree_hash: Callable[[int, int], bytes] | Mapping) -> bytes:
    """MTH of leaves ``[start, end)`` composed from its complete subtrees.

    ``subtree_hash`` maps ``(level, index)`` to the hash of that complete
    subtree (level 0 is the leaf hash): a mapping or a function of two ints.
    """
    lookup = subtree_hash.__getitem__ if isinstance(subtree_hash, Mapping) else None
    keys = perfect_subtrees(start, end)
    values = [lookup(key) if lookup else subtree_hash(*key) for key in keys]
    value = values[-1]
    for i in range(len(values) - 2, -1, -1):
        value = node_hash(values[i], value)
    return value


def _subtrees_from_leaves(leaf_hashes: Sequence[bytes]) -> Callable[[int, int], bytes]:
    def subtree_hash(level: int, index: int) -> bytes:
        return root_from_leaf_hashes(leaf_hashes[index << level : (index + 1) << level])

    return subtree_hash


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(index, D[n]) computed from all ``n`` leaf hashes (for small trees and tests)."""
    lookup = _subtrees_from_leaves(leaf_hashes)
    return [range_hash(s, e, lookup) for s, e in inclusion_path_ranges(index, len(leaf_hashes))]


def consistency_proof(first: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """PROOF(first, D[n]) computed from all ``n`` leaf hashes (for small trees and tests)."""
    lookup = _subtrees_from_leaves(leaf_hashes)
    return [range_hash(s, e, lookup) for s, e in consistency_path_ranges(first, len(leaf_hashes))]


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofInputError(f"{name}: got {len(value)} bytes, want {HASH_SIZE}")


def _decompose_inclusion(index: int, size: int) -> tuple[int, int]:
    """(inner, border): proof nodes below and on the right border of the tree for leaf ``index``."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root implied by an inclusion proof (RFC 9162 2.1.3.2, steps 1-4).

    ``leaf`` is the leaf *hash*; ``proof`` the inclusion path, leaf side first.
    Raises :class:`ProofInputError` on an index outside the tree, a hash that
    is not 32 bytes, or a proof of the wrong length.
    """
    if not 0 <= index < size:
        raise ProofInputError(f"inclusion proof: got leaf index {index}, want 0 <= index < tree size {size}")
    _check_hash("leaf hash", leaf)
    inner, border = _decompose_inclusion(index, size)
    if len(proof) != inner + border:
        raise ProofInputError(
            f"inclusion proof for leaf {index} in tree of size {size}: "
            f"got {len(proof)} hashes, want {inner + border}"
        )
    for i, p in enumerate(proof):
        _check_hash(f"inclusion proof hash {i}", p)
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            raise ProofInputError(f"inclusion proof for leaf {index} in tree of size {size}: proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofInputError(f"inclusion proof for leaf {index} in tree of size {size}: proof too short")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Check that leaf hash ``leaf`` is at ``index`` in the tree of ``size`` leaves with ``root``.

    Raises :class:`ProofInputError` on malformed input, :class:`RootMismatchError`
    when the proof leads to another root.
    """
    _check_hash("root", root)
    computed = root_from_inclusion_proof(index, size, leaf, proof)
    if computed != root:
        raise RootMismatchError(computed, root)


def verify_consistency(first: int, second: int, proof: Sequence[bytes], first_root: bytes, second_root: bytes) -> None:
    """Check that the tree of ``first`` leaves with ``first_root`` is a prefix of the one of
    ``second`` leaves with ``second_root`` (RFC 9162 2.1.4.2).

    Preconditions: ``0 < first <= second``; for ``first == second`` the proof is
    empty and the two roots must be equal. Raises :class:`ProofInputError` on
    malformed input, :class:`RootMismatchError` when a recomputed root differs.
    """
    if second < first:
        raise ProofInputError(f"consistency proof: got first={first} > second={second}, want first <= second")
    if first == 0:
        raise ProofInputError(
            "consistency proof: got first=0, want first >= 1 (a proof from the empty tree is meaningless)"
        )
    if first == second:
        if proof:
            raise ProofInputError(f"consistency proof for equal sizes {first}: got {len(proof)} hashes, want 0")
        if first_root != second_root:
            raise RootMismatchError(second_root, first_root)
        return
    if not proof:
        raise ProofInputError(f"consistency proof from {first} to {second}: got 0 hashes, want at least 1")
    _check_hash("first root", first_root)
    _check_hash("second root", second_root)
    for i, c in enumerate(proof):
        _check_hash(f"consistency proof hash {i}", c)
    shift = (first & -first).bit_length() - 1
    inner, border = _decompose_inclusion(first - 1, second)
    inner -= shift
    seeded = first != 1 << shift  # unless first is a power of two, the proof starts with its subtree
    want = int(seeded) + inner + border
    if len(proof) != want:
        raise ProofInputError(f"consistency proof from {first} to {second}: got {len(proof)} hashes, want {want}")

    path = list(proof) if seeded else [first_root, *proof]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofInputError(f"consistency proof from {first} to {second}: proof too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofInputError(f"consistency proof from {first} to {second}: proof too short")
    if fr != first_root:
        raise RootMismatchError(fr, first_root)
    if sr != second_root:
        raise RootMismatchError(sr, second_root)
