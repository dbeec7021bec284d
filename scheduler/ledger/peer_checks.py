"""The checks on a peer ledger's tree heads: signature, fork, consistency with a head seen before.

Shared by the witness cycle (:mod:`~scheduler.ledger.witness`) and the audit
of the peer's log against every head witnessed (:mod:`~scheduler.ledger.witness_audit`).
Each check returns nothing or the checked value, and raises a
:class:`~scheduler.ledger.exceptions.WitnessError` naming the peer's site:

- :func:`verified_head`: the head's Ed25519 signature and key id, and the
  root of an empty tree (:class:`PeerSignatureError`, :class:`PeerInconsistentError`);
- :func:`verified_checkpoint`: the checkpoint note's ledger signature, and
  that it states the head (:class:`PeerSignatureError`, :class:`PeerForkError`);
- :func:`check_not_forked`: no rollback, no second root for one size (:class:`PeerForkError`);
- :func:`check_consistent`: the RFC 9162 2.1.4.2 consistency proof between
  two heads (:class:`PeerInconsistentError`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scheduler.ledger.checkpoint import load_tree_head, verify_checkpoint
from scheduler.ledger.exceptions import (
    FormatError,
    PeerForkError,
    PeerInconsistentError,
    PeerSignatureError,
    ProofError,
    SignatureError,
)
from scheduler.ledger.merkle import EMPTY_ROOT, verify_consistency
from scheduler.ledger.note import Note
from scheduler.ledger.signing import TreeHead

ConsistencyProof = Sequence[str] | Mapping[str, Any]
"""A consistency path as hex strings, or the peer's whole answer ``{"first", "second", "consistency_path"}``."""


def _proof_path(site: str, proof: ConsistencyProof, first: int, second: int) -> list[bytes]:
    """The proof hashes, after checking an answer's sizes; a malformed proof is an inconsistency."""
    if isinstance(proof, Mapping):
        got = (proof.get("first"), proof.get("second"))
        if got != (first, second):
            raise PeerInconsistentError(
                f"consistency proof: got sizes {got[0]} -> {got[1]}, want {first} -> {second}",
                site=site, tree_size=second, first=first,
            )
        path = proof.get("consistency_path")
    else:
        path = proof
    if isinstance(path, (str, bytes)) or not isinstance(path, Sequence):
        raise PeerInconsistentError(
            f"consistency proof from {first} to {second}: got {type(path).__name__}, want a list of hex hashes",
            site=site, tree_size=second, first=first,
        )
    hashes = []
    for i, value in enumerate(path):
        try:
            if not isinstance(value, str):
                raise ValueError(type(value).__name__)
            hashes.append(bytes.fromhex(value))
        except ValueError as exc:
            raise PeerInconsistentError(
                f"consistency proof from {first} to {second}: hash {i} got {str(value)[:70]!r}, want hex",
                site=site, tree_size=second, first=first,
            ) from exc
    return hashes


def check_consistent(
    site: str, first: int, first_root: bytes, second: int, second_root: bytes, proof: ConsistencyProof | None
) -> None:
    """Raise unless the tree (second, second_root) extends (first, first_root); ``first <= second``."""
    path = _proof_path(site, proof if proof is not None else [], first, second)
    if first == 0:
        if path:
            raise PeerInconsistentError(
                f"consistency proof from the empty tree: got {len(path)} hashes, want 0",
                site=site, tree_size=second, first=first,
            )
        return
    try:
        verify_consistency(first, second, path, first_root, second_root)
    except ProofError as exc:
        raise PeerInconsistentError(
            f"head of size {second} is not consistent with the witnessed head of size {first}: {exc}",
            site=site, tree_size=second, first=first,
        ) from exc


def verified_head(site: str, tree_head: TreeHead | Mapping[str, Any], public_key: Ed25519PublicKey) -> TreeHead:
    """The peer's head, once its signature verifies under ``public_key`` (and an empty tree has the empty root)."""
    head = load_tree_head(tree_head)
    try:
        head.verify(public_key)
    except SignatureError as exc:
        raise PeerSignatureError(str(exc), site=site, tree_size=head.tree_size) from exc
    root = bytes.fromhex(head.root_hash)
    if head.tree_size == 0 and root != EMPTY_ROOT:
        raise PeerInconsistentError(
            f"head of size 0: root got {head.root_hash}, want {EMPTY_ROOT.hex()} (SHA-256 of the empty string)",
            site=site, tree_size=0,
        )
    return head


def check_not_forked(site: str, head: TreeHead, witnessed_size: int, witnessed_root: str) -> None:
    """Raise unless ``head`` is at least as large as the witnessed head, with its root at the same size."""
    if head.tree_size < witnessed_size:
        raise PeerForkError(
            f"head of size {head.tree_size} is smaller than the witnessed head of size {witnessed_size} "
            f"(the log was rolled back)",
            site=site, tree_size=head.tree_size, witnessed=witnessed_size,
        )
    if head.tree_size == witnessed_size and head.root_hash != witnessed_root:
        raise PeerForkError(
            f"two heads of size {witnessed_size}: root got {head.root_hash}, witnessed {witnessed_root}",
            site=site, tree_size=head.tree_size, witnessed=witnessed_size,
        )


def verified_checkpoint(site: str, head: TreeHead, note: str | bytes, public_key: Ed25519PublicKey) -> Note:
    """The peer's checkpoint note, once its ledger signature verifies and it states ``head``.

    A checkpoint of another size is a :class:`FormatError` (fetch both again).
    """
    parsed = Note.parse(note)
    try:
        point = verify_checkpoint(parsed, public_key, site=site)
    except SignatureError as exc:
        raise PeerSignatureError(f"checkpoint: {exc}", site=site, tree_size=head.tree_size) from exc
    if point.tree_size == head.tree_size and point.root_hash_hex != head.root_hash:
        raise PeerForkError(
            f"checkpoint and tree head of size {head.tree_size} have different roots: "
            f"{point.root_hash_hex} and {head.root_hash}",
            site=site, tree_size=head.tree_size, witnessed=head.tree_size,
        )
    if point.tree_size != head.tree_size:
        raise FormatError(
            f"peer {site} checkpoint: got tree size {point.tree_size}, want {head.tree_size} (the tree head's); "
            f"fetch both again"
        )
    return parsed
