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

The checks themselves are in :mod:`~scheduler.ledger.peer_checks`; what an
auditor checks of it (a witness item, the peer's log against every head
witnessed) in :mod:`~scheduler.ledger.witness_audit`.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from policies.canonical import canonical_json
from scheduler.ledger.checkpoint import (
    Checkpoint,
    add_cosignature,
    check_site,
    load_tree_head,
)
from scheduler.ledger.entry import TIMESTAMP_PATTERN, format_timestamp
from scheduler.ledger.exceptions import FormatError
from scheduler.ledger.merkle import EMPTY_ROOT
from scheduler.ledger.note import Note
from scheduler.ledger.peer_checks import (
    ConsistencyProof,
    check_consistent,
    check_not_forked,
    verified_checkpoint,
    verified_head,
)
from scheduler.ledger.signing import PublicKey, TreeHead, key_id

_HEX64 = r"^[0-9a-f]{64}$"


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
        check_site(self.site)

    @classmethod
    def of_tree_head(cls, site: str, tree_head: TreeHead | Mapping[str, Any]) -> WitnessState:
        """The state after witnessing ``tree_head`` of ``site``."""
        head = load_tree_head(tree_head)
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

    @classmethod
    def load(cls, value: Any) -> Cosignature:
        """The cosignature of its JSON object; :class:`FormatError` naming the field if it does not fit."""
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise _format_error("cosignature", exc) from exc


def cosigned_bytes(site: str, tree_head: TreeHead | Mapping[str, Any]) -> bytes:
    """What the JSON cosignature signs: canonical JSON of the peer's site and its head's size, root, timestamp.

    >>> cosigned_bytes("DE", {"tree_size": 1, "root_hash": "ab" * 32, "timestamp": "2026-01-02T03:04:05.000006Z",
    ...                       "key_id": "cd" * 32, "signature": ""}).replace(b"ab" * 32, b"<root>")
    b'{"root_hash":"<root>","site":"DE","timestamp":"2026-01-02T03:04:05.000006Z","tree_size":1}'
    """
    head = load_tree_head(tree_head)
    return canonical_json(
        {"site": check_site(site), "tree_size": head.tree_size, "root_hash": head.root_hash,
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
    check_site(peer_site)
    public_key = load_public_key(peer_key)
    head = verified_head(peer_site, tree_head, public_key)
    if checkpoint is not None:
        verified_checkpoint(peer_site, head, checkpoint, public_key)
    if last is None:
        check_consistent(peer_site, 0, EMPTY_ROOT, head.tree_size, bytes.fromhex(head.root_hash), consistency_proof)
        return head
    if last.site != peer_site:
        raise FormatError(f"witness state: site got {last.site}, want {peer_site} (the peer being witnessed)")
    check_not_forked(peer_site, head, last.tree_size, last.root_hash)
    check_consistent(
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
    check_site(site)
    if site == peer_site:
        raise FormatError(f"peer_site: got {peer_site}, want the other site than this one ({site})")
    head = check_peer_head(
        peer_site=peer_site, peer_key=peer_key, last=last, tree_head=tree_head,
        consistency_proof=consistency_proof, checkpoint=checkpoint,
    )
    moment = int(time.time()) if now is None else now
    if checkpoint is not None:
        note = Note.parse(checkpoint)
    else:
        note = Note(Checkpoint.of_tree_head(peer_site, head).body().decode("utf-8"))
    cosigned = add_cosignature(note, signing_key, site=site, timestamp=moment)
    signature = signing_key.sign(cosigned_bytes(peer_site, head))
    cosignature = Cosignature(
        key_id=key_id(signing_key.public_key()),
        signature=base64.b64encode(signature).decode("ascii"),
        timestamp=format_timestamp(datetime.fromtimestamp(moment, UTC)),
    )
    served = tree_head.model_dump() if isinstance(tree_head, TreeHead) else dict(tree_head)
    return Witnessed(peer_site, served, cosignature, cosigned, WitnessState.of_tree_head(peer_site, head))
