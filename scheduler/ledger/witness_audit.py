"""What an auditor checks of witnessing (``corridor audit verify``): witness items, and the peer's log.

- :func:`verify_witness_item`: one ``/audit/witness`` item of a site: the
  peer's head, the witness's JSON cosignature of it, and the checkpoint with
  both sites' signature lines, made at one instant;
- :func:`verify_against_witnessed` (``--peer``): the peer's log, as its
  export or as its current head plus consistency proofs, agrees with every
  head this site witnessed: none rolled back, rewritten or forked.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from policies.canonical import canonical_json
from scheduler.ledger.checkpoint import check_site, load_tree_head, verify_checkpoint, verify_cosignature
from scheduler.ledger.entry import format_timestamp
from scheduler.ledger.exceptions import FormatError, PeerForkError, SignatureError, VerificationError
from scheduler.ledger.merkle import EMPTY_ROOT, CompactRange, leaf_hash
from scheduler.ledger.peer_checks import ConsistencyProof, check_consistent, check_not_forked, verified_head
from scheduler.ledger.signing import PublicKey, TreeHead, key_id
from scheduler.ledger.witness import Cosignature, WitnessState, cosigned_bytes, load_public_key


@dataclass(frozen=True)
class PeerReport:
    """What :func:`verify_against_witnessed` checked: the peer's log size and how many witnessed heads."""

    site: str
    tree_size: int
    witnessed: int


def verify_witness_item(
    item: Mapping[str, Any],
    *,
    witness_site: str,
    witness_key: Ed25519PublicKey | PublicKey | Mapping[str, Any],
    peer_key: Ed25519PublicKey | PublicKey | Mapping[str, Any],
) -> TreeHead:
    """Check one ``/audit/witness`` item of ``witness_site`` (who calls: auditors, ``corridor audit verify``).

    The peer's head verifies under ``peer_key``; the JSON cosignature under
    ``witness_key``; the checkpoint states the head, carries the peer's ledger
    signature and the witness's ``cosignature/v1``, made at the cosignature's
    ``timestamp``. Raises :class:`FormatError` or :class:`SignatureError`.
    """
    keys = set(item)
    if keys != {"site", "tree_head", "cosignature", "checkpoint"}:
        raise FormatError(f"witness item: got keys {sorted(keys)}, want checkpoint, cosignature, site, tree_head")
    peer_site = item["site"]
    check_site(peer_site)
    if peer_site == witness_site:
        raise FormatError(f"witness item: site got {peer_site}, want the peer of {witness_site}")
    head = load_tree_head(item["tree_head"])
    head.verify(load_public_key(peer_key))
    cosignature = Cosignature.load(item["cosignature"])
    witness_public = load_public_key(witness_key)
    if cosignature.key_id != key_id(witness_public):
        raise SignatureError(f"cosignature: key_id got {cosignature.key_id}, want {key_id(witness_public)}")
    try:
        witness_public.verify(base64.b64decode(cosignature.signature, validate=True), cosigned_bytes(peer_site, head))
    except (InvalidSignature, binascii.Error) as exc:
        raise SignatureError(f"cosignature of {peer_site} head of size {head.tree_size} does not verify") from exc
    point = verify_checkpoint(item["checkpoint"], load_public_key(peer_key), site=peer_site)
    if (point.tree_size, point.root_hash_hex) != (head.tree_size, head.root_hash):
        raise FormatError(
            f"witness item checkpoint: got size {point.tree_size} root {point.root_hash_hex}, "
            f"want size {head.tree_size} root {head.root_hash} (the tree head's)"
        )
    moment = verify_cosignature(item["checkpoint"], witness_public, site=witness_site)
    want = format_timestamp(datetime.fromtimestamp(moment, UTC))
    if cosignature.timestamp != want:
        raise FormatError(f"cosignature timestamp: got {cosignature.timestamp}, want {want} (the checkpoint's)")
    return head


def verify_against_witnessed(
    witnessed: Iterable[WitnessState | Mapping[str, Any]],
    *,
    peer_site: str,
    entries: Iterable[Mapping[str, Any]] | None = None,
    tree_head: TreeHead | Mapping[str, Any] | None = None,
    peer_key: Ed25519PublicKey | PublicKey | Mapping[str, Any] | None = None,
    consistency_proof: Callable[[int, int], ConsistencyProof] | None = None,
) -> PeerReport:
    """Check the peer's log against every head this site witnessed of it (``corridor audit verify --peer``).

    ``witnessed``: the witnessed heads (:class:`WitnessState` or tree heads).
    Give either

    - ``entries``: the peer's whole log in index order, as ``/audit/export``
      items ``{"index", "leaf_hash", "entry"}``; the root of the first
      ``tree_size`` leaves must be each witnessed root; or
    - ``tree_head`` (verified with ``peer_key``) and ``consistency_proof(first,
      second)``, which fetches the peer's proof between two sizes; each
      witnessed head must be consistent with the current one.

    Raises :class:`PeerForkError` when the log is shorter than a witnessed
    head or has another root at its size, :class:`PeerInconsistentError` when
    a proof fails, :class:`PeerSignatureError` for a bad current head, and
    :class:`VerificationError` for an export whose items do not hash to their
    ``leaf_hash`` or skip an index.
    """
    check_site(peer_site)
    heads = _witnessed_heads(peer_site, witnessed)
    if (entries is None) == (tree_head is None):
        raise ValueError("verify_against_witnessed: give either entries, or tree_head with peer_key and consistency_proof")
    if entries is not None:
        return _entries_against(peer_site, heads, entries)
    if peer_key is None or consistency_proof is None:
        raise ValueError("verify_against_witnessed: tree_head needs peer_key and consistency_proof")
    head = verified_head(peer_site, tree_head, load_public_key(peer_key))
    root = bytes.fromhex(head.root_hash)
    for size, witnessed_root in heads:
        check_not_forked(peer_site, head, size, witnessed_root)
        if size == 0:
            _check_empty(peer_site, witnessed_root)
        elif size < head.tree_size:
            check_consistent(
                peer_site, size, bytes.fromhex(witnessed_root), head.tree_size, root,
                consistency_proof(size, head.tree_size),
            )
    return PeerReport(peer_site, head.tree_size, len(heads))


def _witnessed_heads(site: str, witnessed: Iterable[WitnessState | Mapping[str, Any]]) -> list[tuple[int, str]]:
    """(size, root hex) of each witnessed head, smallest first; two roots for one size are a fork."""
    heads: dict[int, str] = {}
    for value in witnessed:
        if isinstance(value, WitnessState):
            state = value
        else:  # a stored state, or a tree head (whose key id and signature are not needed here)
            fields = {k: value[k] for k in ("tree_size", "root_hash", "timestamp") if k in value}
            state = WitnessState.from_json({"site": value.get("site", site), **fields})
        if state.site != site:
            raise FormatError(f"witnessed head: site got {state.site}, want {site}")
        seen = heads.setdefault(state.tree_size, state.root_hash)
        if seen != state.root_hash:
            raise PeerForkError(
                f"two witnessed heads of size {state.tree_size}: roots {seen} and {state.root_hash}",
                site=site, tree_size=state.tree_size, witnessed=state.tree_size,
            )
    return sorted(heads.items())


def _check_empty(site: str, root: str) -> None:
    if root != EMPTY_ROOT.hex():
        raise PeerForkError(
            f"witnessed head of size 0: root got {root}, want {EMPTY_ROOT.hex()}",
            site=site, tree_size=0, witnessed=0,
        )


def _entries_against(site: str, heads: list[tuple[int, str]], entries: Iterable[Mapping[str, Any]]) -> PeerReport:
    pending = iter(heads)
    following = next(pending, None)
    compact = CompactRange()

    def compare() -> None:
        nonlocal following
        while following is not None and following[0] == compact.size:
            size, root = following
            if size == 0:
                _check_empty(site, root)
            elif compact.root().hex() != root:
                raise PeerForkError(
                    f"log's root at size {size} got {compact.root().hex()}, witnessed {root} (the log was rewritten)",
                    site=site, tree_size=size, witnessed=size,
                )
            following = next(pending, None)

    compare()
    for position, item in enumerate(entries):
        if item.get("index") != position:
            raise VerificationError("index", f"got index {item.get('index')!r}, want {position}", index=position)
        computed = leaf_hash(canonical_json(item.get("entry")))
        if computed.hex() != item.get("leaf_hash"):
            raise VerificationError(
                "leaf_hash", f"got {item.get('leaf_hash')!r}, want {computed.hex()} (hash of the entry)", index=position
            )
        compact.append(computed)
        compare()
    if following is not None:
        raise PeerForkError(
            f"log has {compact.size} entries, fewer than the witnessed head of size {following[0]} "
            f"(the log was truncated)",
            site=site, tree_size=compact.size, witnessed=following[0],
        )
    return PeerReport(site, compact.size, len(heads))
