"""Witnessing the peer site's ledger: check each signed tree head it publishes, then countersign it.

Pure and storage-agnostic: the caller fetches, stores and serves; this module
only decides. One witness cycle, run by the peer link every few seconds:

1. fetch the peer's latest tree head (``GET /audit/tree-head``), its
   checkpoint (``GET /audit/checkpoint``) and a consistency proof from the
   last head this site witnessed (``GET /audit/proof/consistency``);
2. :func:`witness` checks, in this order, and raises on the first failure:

   - the head's Ed25519 signature and key id against the peer's *configured*
     public key, and the checkpoint's note signature
     (:class:`~scheduler.ledger.exceptions.PeerSignatureError`);
   - fork: a head smaller than the last witnessed, or of the same size with
     another root, or a checkpoint and a head of one size with different roots
     (:class:`~scheduler.ledger.exceptions.PeerForkError`);
   - consistency: the proof from the last witnessed head to this one
     (RFC 9162 2.1.4.2), an empty-tree head whose root is not SHA-256("")
     (:class:`~scheduler.ledger.exceptions.PeerInconsistentError`);

3. on success it returns a :class:`Witnessed`: the ``/audit/witness`` item
   (the head as served, this site's JSON cosignature, the checkpoint with this
   site's ``cosignature/v1`` line) and the :class:`WitnessState` to keep for
   the next cycle. The caller appends a ``witness`` entry to its own ledger.
   On a :class:`~scheduler.ledger.exceptions.WitnessError` the caller raises a
   Critical ``peer_ledger_inconsistent`` event and stops forwarding to the peer;
   nothing was cosigned and the state must not move.

The JSON cosignature (DESIGN, auditor API) is ``{"key_id", "signature",
"timestamp"}``: ``key_id`` the hex SHA-256 of this site's raw ledger public
key, ``signature`` the Ed25519 signature (base64) of this site's ledger key
over the canonical JSON of ``{"site", "tree_size", "root_hash", "timestamp"}``
— the peer's site and the peer head's three fields, e.g.
``{"root_hash":"9f…","site":"DE","timestamp":"2026-01-02T03:04:05.000006Z","tree_size":12}``.
``timestamp`` of the cosignature itself is when this site cosigned, in whole
seconds: the same instant its ``cosignature/v1`` line signs, so it is covered
by that signature. Its key set differs from a tree head's (no ``key_id``), so
the one ledger key never signs bytes that read as both.

:func:`verify_against_witnessed` backs ``corridor audit verify --peer``: the
peer's log, as entries or as its current head plus consistency proofs, must
agree with every head this site witnessed.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from policies.canonical import canonical_json
from scheduler.ledger import checkpoint as c2sp
from scheduler.ledger.entry import TIMESTAMP_PATTERN, format_timestamp
from scheduler.ledger.exceptions import (
    FormatError,
    PeerForkError,
    PeerInconsistentError,
    PeerSignatureError,
    ProofError,
    SignatureError,
    VerificationError,
)
from scheduler.ledger.merkle import EMPTY_ROOT, CompactRange, leaf_hash, verify_consistency
from scheduler.ledger.signing import PublicKey, TreeHead, key_id

_HEX64 = r"^[0-9a-f]{64}$"

ConsistencyProof = Sequence[str] | Mapping[str, Any]
"""A consistency path as hex strings, or the peer's whole answer ``{"first", "second", "consistency_path"}``."""


def _format_error(what: str, exc: ValidationError) -> FormatError:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "value"
    return FormatError(f"{what}: {where}: {first['msg']}")


class WitnessState(BaseModel):
    """The last head this site witnessed of one peer: what the next cycle is checked against.

    ``model_dump()`` / :meth:`to_json` is its JSON shape, e.g.
    ``{"site": "DE", "tree_size": 12, "root_hash": "9f…", "timestamp": "2026-…Z"}``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: StrictStr = Field(description="The peer's site, FR or DE.")
    tree_size: StrictInt = Field(ge=0, description="Size of the last witnessed head.")
    root_hash: StrictStr = Field(pattern=_HEX64, description="Its root hash, lowercase hex.")
    timestamp: StrictStr = Field(pattern=TIMESTAMP_PATTERN, description="Its timestamp, as the peer signed it.")

    def model_post_init(self, context: Any) -> None:
        c2sp._check_site(self.site)

    @classmethod
    def of_tree_head(cls, site: str, tree_head: TreeHead | Mapping[str, Any]) -> WitnessState:
        """The state after witnessing ``tree_head`` of ``site``."""
        head = c2sp.load_tree_head(tree_head)
        return cls(site=site, tree_size=head.tree_size, root_hash=head.root_hash, timestamp=head.timestamp)

    def to_json(self) -> dict[str, Any]:
        """The JSON object (a dict of JSON types)."""
        return self.model_dump()

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | str | bytes) -> WitnessState:
        """Parse the JSON object (or its text); :class:`FormatError` naming the field if it does not fit."""
        try:
            if isinstance(value, (str, bytes)):
                value = json.loads(value)
            return cls.model_validate(value)
        except json.JSONDecodeError as exc:
            raise FormatError(f"witness state: got invalid JSON ({exc.msg} at {exc.pos})") from exc
        except ValidationError as exc:
            raise _format_error("witness state", exc) from exc


class Cosignature(BaseModel):
    """This site's JSON cosignature of a peer head: ``{"key_id", "signature", "timestamp"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: StrictStr = Field(pattern=_HEX64, description="Hex SHA-256 of the cosigning site's raw ledger key.")
    signature: StrictStr = Field(description="Ed25519 signature of cosigned_bytes(), base64.")
    timestamp: StrictStr = Field(pattern=TIMESTAMP_PATTERN, description="When it was made, whole seconds, UTC.")


def cosigned_bytes(site: str, tree_head: TreeHead | Mapping[str, Any]) -> bytes:
    """What the JSON cosignature signs: canonical JSON of the peer's site and its head's size, root, timestamp.

    >>> cosigned_bytes("DE", {"tree_size": 1, "root_hash": "ab" * 32, "timestamp": "2026-01-02T03:04:05.000006Z",
    ...                       "key_id": "cd" * 32, "signature": ""}).replace(b"ab" * 32, b"<root>")
    b'{"root_hash":"<root>","site":"DE","timestamp":"2026-01-02T03:04:05.000006Z","tree_size":1}'
    """
    head = c2sp.load_tree_head(tree_head)
    return canonical_json(
        {"site": c2sp._check_site(site), "tree_size": head.tree_size, "root_hash": head.root_hash,
         "timestamp": head.timestamp}
    )


@dataclass(frozen=True)
class Witnessed:
    """The outcome of one successful witness cycle.

    ``site`` is the peer's; ``tree_head`` the head exactly as the peer served
    it; ``checkpoint`` the peer's checkpoint note with this site's
    ``cosignature/v1`` line; ``state`` what to store for the next cycle.
    """

    site: str
    tree_head: dict[str, Any]
    cosignature: Cosignature
    checkpoint: str
    state: WitnessState

    def item(self) -> dict[str, Any]:
        """The ``/audit/witness`` item: ``{"site", "tree_head", "cosignature", "checkpoint"}``."""
        return {
            "site": self.site,
            "tree_head": dict(self.tree_head),
            "cosignature": self.cosignature.model_dump(),
            "checkpoint": self.checkpoint,
        }


@dataclass(frozen=True)
class PeerReport:
    """What :func:`verify_against_witnessed` checked: the peer's log size and how many witnessed heads."""

    site: str
    tree_size: int
    witnessed: int


def load_public_key(public_key: Ed25519PublicKey | PublicKey | Mapping[str, Any]) -> Ed25519PublicKey:
    """The Ed25519 key of its published form ``{"key_id", "public_key"}`` (key id checked), or the key itself."""
    if isinstance(public_key, Ed25519PublicKey):
        return public_key
    if not isinstance(public_key, PublicKey):
        try:
            public_key = PublicKey.model_validate(public_key)
        except ValidationError as exc:
            raise _format_error("public key", exc) from exc
    return public_key.load()


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


def _check_consistent(
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


def _verified_head(site: str, tree_head: TreeHead | Mapping[str, Any], public_key: Ed25519PublicKey) -> TreeHead:
    head = c2sp.load_tree_head(tree_head)
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


def _check_not_forked(site: str, head: TreeHead, witnessed_size: int, witnessed_root: str) -> None:
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


def _peer_checkpoint(site: str, head: TreeHead, note: str | bytes, public_key: Ed25519PublicKey) -> c2sp.Note:
    """The peer's checkpoint note, once its ledger signature verifies and it states ``head``."""
    parsed = c2sp.Note.parse(note)
    try:
        point = c2sp.verify_checkpoint(parsed, public_key, site=site)
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


def check_peer_head(
    *,
    peer_site: str,
    peer_key: Ed25519PublicKey | PublicKey | Mapping[str, Any],
    last: WitnessState | None,
    tree_head: TreeHead | Mapping[str, Any],
    consistency_proof: ConsistencyProof | None = None,
    checkpoint: str | bytes | None = None,
) -> TreeHead:
    """Every check of :func:`witness`, and nothing signed: the verified head, or a :class:`WitnessError`.

    ``last`` is ``None`` on first contact (the head is then taken on trust,
    and any proof must be empty). ``consistency_proof`` runs from
    ``last.tree_size`` to the head's size. Raises :class:`FormatError` when the
    head or checkpoint does not parse, or ``last`` is another peer's.
    """
    c2sp._check_site(peer_site)
    public_key = load_public_key(peer_key)
    head = _verified_head(peer_site, tree_head, public_key)
    if checkpoint is not None:
        _peer_checkpoint(peer_site, head, checkpoint, public_key)
    if last is None:
        _check_consistent(peer_site, 0, EMPTY_ROOT, head.tree_size, bytes.fromhex(head.root_hash), consistency_proof)
        return head
    if last.site != peer_site:
        raise FormatError(f"witness state: site got {last.site}, want {peer_site} (the peer being witnessed)")
    _check_not_forked(peer_site, head, last.tree_size, last.root_hash)
    _check_consistent(
        peer_site, last.tree_size, bytes.fromhex(last.root_hash),
        head.tree_size, bytes.fromhex(head.root_hash), consistency_proof,
    )
    return head


def witness(
    *,
    site: str,
    signing_key: Ed25519PrivateKey,
    peer_site: str,
    peer_key: Ed25519PublicKey | PublicKey | Mapping[str, Any],
    last: WitnessState | None,
    tree_head: TreeHead | Mapping[str, Any],
    consistency_proof: ConsistencyProof | None = None,
    checkpoint: str | bytes | None = None,
    now: int | None = None,
) -> Witnessed:
    """Check the peer's new head (see :func:`check_peer_head`) and countersign it with this site's ledger key.

    ``site`` is this site; ``now`` the unix time of the cosignature (default:
    the clock). Without the peer's ``checkpoint`` note, the cosigned
    checkpoint is built from the head and carries only this site's line.
    """
    c2sp._check_site(site)
    if site == peer_site:
        raise FormatError(f"peer_site: got {peer_site}, want the other site than this one ({site})")
    head = check_peer_head(
        peer_site=peer_site, peer_key=peer_key, last=last, tree_head=tree_head,
        consistency_proof=consistency_proof, checkpoint=checkpoint,
    )
    moment = int(time.time()) if now is None else now
    if checkpoint is not None:
        note = c2sp.Note.parse(checkpoint)
    else:
        note = c2sp.Note(c2sp.Checkpoint.of_tree_head(peer_site, head).body().decode("utf-8"))
    cosigned = c2sp.add_cosignature(note, signing_key, site=site, timestamp=moment)
    signature = signing_key.sign(cosigned_bytes(peer_site, head))
    cosignature = Cosignature(
        key_id=key_id(signing_key.public_key()),
        signature=base64.b64encode(signature).decode("ascii"),
        timestamp=format_timestamp(datetime.fromtimestamp(moment, UTC)),
    )
    served = tree_head.model_dump() if isinstance(tree_head, TreeHead) else dict(tree_head)
    return Witnessed(peer_site, served, cosignature, cosigned, WitnessState.of_tree_head(peer_site, head))


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
    c2sp._check_site(peer_site)
    if peer_site == witness_site:
        raise FormatError(f"witness item: site got {peer_site}, want the peer of {witness_site}")
    head = c2sp.load_tree_head(item["tree_head"])
    head.verify(load_public_key(peer_key))
    try:
        cosignature = Cosignature.model_validate(item["cosignature"])
    except ValidationError as exc:
        raise _format_error("cosignature", exc) from exc
    witness_public = load_public_key(witness_key)
    if cosignature.key_id != key_id(witness_public):
        raise SignatureError(f"cosignature: key_id got {cosignature.key_id}, want {key_id(witness_public)}")
    try:
        witness_public.verify(base64.b64decode(cosignature.signature, validate=True), cosigned_bytes(peer_site, head))
    except (InvalidSignature, binascii.Error) as exc:
        raise SignatureError(f"cosignature of {peer_site} head of size {head.tree_size} does not verify") from exc
    point = c2sp.verify_checkpoint(item["checkpoint"], load_public_key(peer_key), site=peer_site)
    if (point.tree_size, point.root_hash_hex) != (head.tree_size, head.root_hash):
        raise FormatError(
            f"witness item checkpoint: got size {point.tree_size} root {point.root_hash_hex}, "
            f"want size {head.tree_size} root {head.root_hash} (the tree head's)"
        )
    moment = c2sp.verify_cosignature(item["checkpoint"], witness_public, site=witness_site)
    want = format_timestamp(datetime.fromtimestamp(moment, UTC))
    if cosignature.timestamp != want:
        raise FormatError(f"cosignature timestamp: got {cosignature.timestamp}, want {want} (the checkpoint's)")
    return head


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
    c2sp._check_site(peer_site)
    heads = _witnessed_heads(peer_site, witnessed)
    if (entries is None) == (tree_head is None):
        raise ValueError("verify_against_witnessed: give either entries, or tree_head with peer_key and consistency_proof")
    if entries is not None:
        return _entries_against(peer_site, heads, entries)
    if peer_key is None or consistency_proof is None:
        raise ValueError("verify_against_witnessed: tree_head needs peer_key and consistency_proof")
    head = _verified_head(peer_site, tree_head, load_public_key(peer_key))
    root = bytes.fromhex(head.root_hash)
    for size, witnessed_root in heads:
        _check_not_forked(peer_site, head, size, witnessed_root)
        if size == 0:
            _check_empty(peer_site, witnessed_root)
        elif size < head.tree_size:
            _check_consistent(
                peer_site, size, bytes.fromhex(witnessed_root), head.tree_size, root,
                consistency_proof(size, head.tree_size),
            )
    return PeerReport(peer_site, head.tree_size, len(heads))


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
