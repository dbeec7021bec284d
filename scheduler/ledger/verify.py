"""Full verification of a stored ledger, and offline verification of an export.

:func:`verify_log` reads every stored row, in index order, and checks:

- ``missing``: the row at position ``p`` has index ``p`` (no gap);
- ``leaf_hash``: SHA-256(0x00 || stored entry bytes) equals the stored leaf hash;
- ``entry``: the bytes are a JSON object with exactly the entry keys;
- ``index``: the entry's own ``index`` is ``p`` (a row moved, inserted or
  deleted shows here; the first bad index is the smaller of ``p`` and the
  index the entry claims);
- ``columns``: the filter columns (tenant, kind, jurisdiction, timestamp) match the entry;
- ``subtree_cache``: every stored complete-subtree hash, from which proofs
  are served, equals the one recomputed from the leaves;

and for every tree head the log has issued: ``tree_head_key`` (key id),
``tree_head_signature``, ``tree_head_order`` (sizes never shrink),
``tree_head_root`` (the root of the first ``tree_size`` leaves) and
``missing`` when a head covers more entries than the log holds (truncation).
The first failure raises :class:`VerificationError`; a failure that names a
leaf index wins over one that only names a tree head, unless an earlier tree
head already disagrees with the leaves.

Entries appended after the latest tree head verify locally but are not yet
covered by a signature (:attr:`LogReport.unsigned`); after a crash that is
expected, and the next tree head covers them.

:func:`verify_export` checks a JSON-lines export against a signed tree head
without any database: each line's ``leaf_hash`` is the leaf hash of the
canonical JSON of its ``entry`` and the entry's ``index`` is the line's; a
full export (lines without proofs) must hold every index from 0 and its
first ``tree_size`` leaves must hash to the head's root; a filtered export
(every line with ``tree_size`` and ``inclusion_path``) must prove each line's
inclusion under the head's root.

One module because the stored-log and the export verification apply the same
checks in the same order and report them with the same error type.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from policies.canonical import canonical_json
from scheduler.ledger.entry import ENTRY_KEYS, parse_leaf
from scheduler.ledger.exceptions import ProofError, SignatureError, VerificationError
from scheduler.ledger.merkle import CompactRange, leaf_hash, verify_inclusion
from scheduler.ledger.signing import PublicKey, TreeHead, key_id

if TYPE_CHECKING:
    from scheduler.ledger.store import LedgerStore, StoredLeaf


@dataclass(frozen=True)
class LogReport:
    """What a successful :func:`verify_log` checked."""

    size: int
    root_hash: str
    tree_heads: int
    signed_size: int
    """Size of the latest tree head (0 if none)."""

    @property
    def unsigned(self) -> int:
        """Entries after the latest tree head: verified, not yet covered by a signature."""
        return self.size - self.signed_size


@dataclass(frozen=True)
class ExportReport:
    """What a successful :func:`verify_export` checked."""

    lines: int
    tree_size: int
    root_hash: str
    with_proofs: bool
    """True for a filtered export checked line by line with inclusion proofs."""
    uncovered: int
    """Lines of a full export beyond the tree head's size: hashes checked, not covered by the head."""


def _check_row(row: StoredLeaf, position: int) -> VerificationError | None:
    """The first thing wrong with the row at ``position``, or None (the hot loop of verification)."""
    index, leaf, stored_hash, subtrees, tenant, kind, jurisdiction, timestamp = row
    if index != position:
        return VerificationError(
            "missing", f"no entry at index {position}; the next stored index is {index!r}", index=position
        )
    if type(leaf) is not bytes or type(stored_hash) is not bytes or type(subtrees) is not bytes:
        return VerificationError("entry", "stored entry, leaf hash or subtree hashes are not BLOBs", index=position)
    computed = leaf_hash(leaf)
    if computed != stored_hash:
        return VerificationError(
            "leaf_hash",
            f"SHA-256(0x00 || entry bytes) got {computed.hex()}, want the stored leaf hash {stored_hash.hex()}",
            index=position,
        )
    try:
        entry = parse_leaf(leaf)
    except ValueError:
        return VerificationError("entry", "stored entry bytes are not one UTF-8 JSON document", index=position)
    if type(entry) is not dict:
        return VerificationError("entry", f"got a JSON {type(entry).__name__}, want an object", index=position)
    claimed = entry.get("index")
    if claimed != position or type(claimed) is not int:
        first = claimed if type(claimed) is int and 0 <= claimed < position else position
        return VerificationError(
            "index",
            f"entry at position {position} says index {claimed!r}, want {position} "
            "(rows were inserted, removed or moved)",
            index=first,
        )
    if entry.keys() != ENTRY_KEYS:
        extra, lacking = sorted(entry.keys() - ENTRY_KEYS), sorted(ENTRY_KEYS - entry.keys())
        return VerificationError(
            "entry", f"keys: got extra {extra} and missing {lacking}, want exactly the entry keys", index=position
        )
    columns = (tenant, kind, jurisdiction, timestamp)
    wanted = (entry["tenant"], entry["kind"], entry["jurisdiction"], entry["timestamp"])
    if columns != wanted:
        return VerificationError(
            "columns", f"tenant, kind, jurisdiction, timestamp columns got {columns}, want {wanted}", index=position
        )
    return None


def _subtree_failure(position: int, completed: list[tuple[int, int, bytes]], stored: bytes) -> VerificationError:
    """The lowest complete subtree whose stored hash differs from the recomputed one."""
    for level, index, value in completed:
        got = stored[32 * (level - 1) : 32 * level]
        if got != value:
            first, end = index << level, (index + 1) << level
            return VerificationError(
                "subtree_cache",
                f"stored hash of leaves [{first}, {end}) got {got.hex() or 'nothing'}, want {value.hex()}",
                index=first,
            )
    return VerificationError(
        "subtree_cache", f"got {len(stored)} bytes of subtree hashes, want {32 * len(completed)}", index=position
    )


def _check_head(head: TreeHead, public_key: Ed25519PublicKey) -> VerificationError | None:
    want = key_id(public_key)
    if head.key_id != want:
        return VerificationError("tree_head_key", f"key_id got {head.key_id}, want {want}", tree_size=head.tree_size)
    try:
        head.verify(public_key)
    except SignatureError as exc:
        return VerificationError("tree_head_signature", str(exc), tree_size=head.tree_size)
    return None


def verify_log(store: LedgerStore, public_key: Ed25519PublicKey) -> LogReport:
    """Verify every stored entry, the subtree cache and every tree head; raise on the first failure."""
    heads = store.tree_heads()
    other_failures: list[VerificationError] = []  # failures that name a tree head, not a leaf
    largest = 0
    for head in heads:
        failure = _check_head(head, public_key)
        if failure is None and head.tree_size < largest:
            failure = VerificationError(
                "tree_head_order", f"tree_size got {head.tree_size} after a head of size {largest}, want >= {largest}",
                tree_size=head.tree_size,
            )
        if failure is not None:
            other_failures.append(failure)
        largest = max(largest, head.tree_size)
    by_size = sorted(heads, key=lambda head: head.tree_size)
    next_head = 0
    root_failure: VerificationError | None = None
    matched_size = 0

    def check_roots(compact: CompactRange) -> None:
        """Compare every head of size ``compact.size`` with the root recomputed so far."""
        nonlocal next_head, root_failure, matched_size
        root = compact.root().hex()
        while next_head < len(by_size) and by_size[next_head].tree_size == compact.size:
            head = by_size[next_head]
            next_head += 1
            if head.root_hash == root:
                matched_size = max(matched_size, compact.size)
            elif root_failure is None:
                root_failure = VerificationError(
                    "tree_head_root",
                    f"root of the first {head.tree_size} leaves got {root}, want {head.root_hash} (signed); "
                    f"a leaf in [{matched_size}, {head.tree_size}) differs from what was signed",
                    tree_size=head.tree_size,
                )

    def next_head_size() -> int:
        return by_size[next_head].tree_size if next_head < len(by_size) else -1

    compact = CompactRange()
    entry_failure: VerificationError | None = None
    stop_at = next_head_size()
    for row in store.scan():
        position = compact.size
        if position == stop_at:
            check_roots(compact)
            stop_at = next_head_size()
        entry_failure = _check_row(row, position)
        if entry_failure is not None:
            break
        completed = compact.append(row.leaf_hash)
        if (b"".join([value for _, _, value in completed]) if completed else b"") != row.subtrees:
            entry_failure = _subtree_failure(position, completed, row.subtrees)
            break
    if entry_failure is None:
        if compact.size == stop_at:
            check_roots(compact)
        if next_head < len(by_size):
            head = by_size[-1]
            entry_failure = VerificationError(
                "missing",
                f"the log holds {compact.size} entries but a tree head of size {head.tree_size} was issued: "
                f"entries [{compact.size}, {head.tree_size}) are gone",
                index=compact.size,
                tree_size=head.tree_size,
            )

    if root_failure is not None and (entry_failure is None or entry_failure.index >= root_failure.tree_size):
        raise root_failure
    if entry_failure is not None:
        raise entry_failure
    if other_failures:
        raise other_failures[0]
    return LogReport(
        size=compact.size,
        root_hash=compact.root().hex(),
        tree_heads=len(heads),
        signed_size=largest,
    )


def _line_error(check: str, message: str, line: int, index: int | None = None) -> VerificationError:
    return VerificationError(check, message, index=index, line=line)


def _load_head(tree_head: Mapping[str, Any] | TreeHead) -> TreeHead:
    if isinstance(tree_head, TreeHead):
        return tree_head
    try:
        return TreeHead.model_validate(tree_head)
    except ValidationError as exc:
        raise VerificationError("tree_head", f"not a tree head: {exc}") from exc


def _load_key(public_key: Ed25519PublicKey | Mapping[str, Any] | PublicKey) -> Ed25519PublicKey:
    if isinstance(public_key, Ed25519PublicKey):
        return public_key
    if not isinstance(public_key, PublicKey):
        try:
            public_key = PublicKey.model_validate(public_key)
        except ValidationError as exc:
            raise VerificationError("tree_head_key", f"not a public key: {exc}") from exc
    return public_key.load()


def verify_export(
    lines: Iterable[str | bytes],
    tree_head: Mapping[str, Any] | TreeHead,
    public_key: Ed25519PublicKey | Mapping[str, Any] | PublicKey,
) -> ExportReport:
    """Verify export lines against a signed tree head and the ledger's public key; raise on the first failure."""
    head = _load_head(tree_head)
    failure = _check_head(head, _load_key(public_key))
    if failure is not None:
        raise failure
    root = bytes.fromhex(head.root_hash)
    compact = CompactRange()
    with_proofs: bool | None = None
    previous = -1
    count = uncovered = 0
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        count += 1
        try:
            item = json.loads(raw)
        except ValueError:
            raise _line_error("line", "not JSON", number) from None
        if not isinstance(item, dict):
            raise _line_error("line", f"got a JSON {type(item).__name__}, want an object", number)
        index = item.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise _line_error("line", f"index: got {index!r}, want an integer >= 0", number)
        proof_line = "inclusion_path" in item or "tree_size" in item
        want_keys = {"index", "leaf_hash", "entry"} | ({"tree_size", "inclusion_path"} if proof_line else set())
        if item.keys() != want_keys:
            raise _line_error("line", f"keys: got {sorted(item)}, want {sorted(want_keys)}", number, index)
        if with_proofs is None:
            with_proofs = proof_line
        elif with_proofs != proof_line:
            raise _line_error("line", "mixes lines with and without inclusion proofs", number, index)
        if index <= previous:
            raise _line_error("index", f"got index {index} after {previous}, want increasing indexes", number, index)
        previous = index
        entry = item["entry"]
        if not isinstance(entry, dict):
            raise _line_error("entry", f"got a JSON {type(entry).__name__}, want an object", number, index)
        computed = leaf_hash(canonical_json(entry))
        if item["leaf_hash"] != computed.hex():
            raise _line_error(
                "leaf_hash",
                f"SHA-256(0x00 || canonical entry) got {computed.hex()}, want the line's {item['leaf_hash']!r}",
                number,
                index,
            )
        if entry.get("index") != index:
            raise _line_error("index", f"entry says index {entry.get('index')!r}, want {index}", number, index)
        if with_proofs:
            _check_inclusion(item, computed, head, root, number)
        elif index != compact.size + uncovered:
            missing = compact.size + uncovered
            message = f"no line for index {missing}; the next line has index {index}"
            raise _line_error("missing", message, number, missing)
        elif index < head.tree_size:
            compact.append(computed)
        else:
            uncovered += 1
    if not with_proofs:
        if compact.size < head.tree_size:
            raise VerificationError(
                "missing",
                f"the export ends before index {compact.size}; the tree head covers {head.tree_size} entries",
                index=compact.size,
                tree_size=head.tree_size,
            )
        computed_root = compact.root().hex()
        if computed_root != head.root_hash:
            raise VerificationError(
                "tree_head_root",
                f"root of the first {head.tree_size} lines got {computed_root}, want {head.root_hash} (signed)",
                tree_size=head.tree_size,
            )
    return ExportReport(
        lines=count,
        tree_size=head.tree_size,
        root_hash=head.root_hash,
        with_proofs=bool(with_proofs),
        uncovered=uncovered,
    )


def _check_inclusion(item: dict[str, Any], computed: bytes, head: TreeHead, root: bytes, number: int) -> None:
    index = item["index"]
    if item["tree_size"] != head.tree_size:
        raise _line_error(
            "inclusion", f"tree_size got {item['tree_size']!r}, want the tree head's {head.tree_size}", number, index
        )
    path = item["inclusion_path"]
    if not isinstance(path, list) or not all(isinstance(value, str) for value in path):
        raise _line_error("inclusion", "inclusion_path: want a list of hex strings", number, index)
    try:
        proof = [bytes.fromhex(value) for value in path]
    except ValueError:
        raise _line_error("inclusion", "inclusion_path: not hex", number, index) from None
    try:
        verify_inclusion(index, head.tree_size, computed, proof, root)
    except ProofError as exc:
        raise _line_error("inclusion", str(exc), number, index) from exc

