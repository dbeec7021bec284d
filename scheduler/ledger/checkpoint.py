"""C2SP checkpoints of the ledger's tree heads, signed by the ledger and cosigned by the peer site.

Standard transparency tooling reads a log's tree head as a *checkpoint* in a
*signed note* (:mod:`~scheduler.ledger.note`), and witnesses add
*cosignatures* to it (:mod:`~scheduler.ledger.note_signing`). The checkpoint
body (c2sp.org/tlog-checkpoint) is lines ending in ``\\n``::

    corridor.eu/FR/ledger            origin: corridor.eu/<site>/ledger
    20852163                         tree size, ASCII decimal, no leading zero
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=   base64 of the 32-byte RFC 6962 root

Further lines are optional extension lines (non-empty); Corridor writes none.

The ledger signs the body with Ed25519 (type ``0x01``) under the key name of
its origin; a witnessing site adds a ``cosignature/v1`` line (type ``0x04``)
named ``corridor.eu/<site>/witness``. So the site's one Ed25519 ledger key
makes three kinds of signature, kept apart by their messages: the JSON tree
head (canonical JSON starting ``{"key_id"``), the checkpoint note (text
starting with the origin line ``corridor.eu/``) and the cosignature (message
starting ``cosignature/v1\\n``).

>>> from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
>>> key = Ed25519PrivateKey.from_private_bytes(bytes(32))
>>> point = Checkpoint(origin("FR"), 3, bytes(32))
>>> point.body()
b'corridor.eu/FR/ledger\\n3\\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\\n'
>>> note = sign_checkpoint(point, key)
>>> verify_checkpoint(note, key.public_key(), site="FR") == point
True
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from scheduler.ledger.exceptions import FormatError, SigningKeyError
from scheduler.ledger.merkle import HASH_SIZE
from scheduler.ledger.note import (
    CONTROL_CHARACTER,
    COSIGNATURE_V1,
    ED25519,
    Note,
    NoteSignature,
    decode_base64,
    decode_text,
    encode_base64,
)
from scheduler.ledger.note_signing import (
    TIMESTAMP_SIZE,
    NoteVerifier,
    cosignature_timestamp,
    cosigned_message,
    open_note,
    sign_note,
)
from scheduler.ledger.signing import TreeHead
from scheduler.ledger.signing import key_id as ledger_key_id

SITES = ("FR", "DE")
"""The sites of the corridor; each names its ledger's origin and its witness."""

_MAX_TREE_SIZE = 2**64 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


def check_site(site: str) -> str:
    """``site`` if it is one of :data:`SITES`; :class:`FormatError` otherwise."""
    if site not in SITES:
        raise FormatError(f"site: got {site!r}, want one of {', '.join(SITES)}")
    return site


def origin(site: str) -> str:
    """The checkpoint origin (and ledger key name) of a site's ledger.

    >>> origin("DE")
    'corridor.eu/DE/ledger'
    """
    return f"corridor.eu/{check_site(site)}/ledger"


def witness_name(site: str) -> str:
    """The key name of a site's cosignatures on its peer's checkpoints.

    >>> witness_name("FR")
    'corridor.eu/FR/witness'
    """
    return f"corridor.eu/{check_site(site)}/witness"


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint body: origin, tree size, root hash (raw 32 bytes), extension lines.

    Checked on construction; :meth:`body` is the exact text that is signed.
    """

    origin: str
    tree_size: int
    root_hash: bytes
    extensions: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin or CONTROL_CHARACTER.search(self.origin):
            raise FormatError(f"checkpoint origin: got {self.origin!r}, want a non-empty line")
        if isinstance(self.tree_size, bool) or not isinstance(self.tree_size, int):
            raise FormatError(f"checkpoint tree size: got {self.tree_size!r}, want an int")
        if not 0 <= self.tree_size <= _MAX_TREE_SIZE:
            raise FormatError(f"checkpoint tree size: got {self.tree_size}, want 0 <= size < 2**64")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            got = len(self.root_hash) if isinstance(self.root_hash, bytes) else type(self.root_hash).__name__
            raise FormatError(f"checkpoint root hash: got {got} bytes, want {HASH_SIZE}")
        for number, line in enumerate(self.extensions, start=4):
            if not line or "\n" in line or CONTROL_CHARACTER.search(line):
                raise FormatError(f"checkpoint line {number}: got {line!r}, want a non-empty extension line")

    def body(self) -> bytes:
        """The note text: origin, size, base64 root and any extension lines, each ending in a newline."""
        lines = [self.origin, str(self.tree_size), encode_base64(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")

    @property
    def root_hash_hex(self) -> str:
        """The root hash as the JSON tree head writes it (lowercase hex)."""
        return self.root_hash.hex()

    @classmethod
    def of_tree_head(cls, site: str, tree_head: TreeHead | Mapping[str, Any]) -> Checkpoint:
        """The checkpoint of a site's JSON tree head (``{"tree_size", "root_hash", ...}``)."""
        head = load_tree_head(tree_head)
        return cls(origin(site), head.tree_size, bytes.fromhex(head.root_hash))

    @classmethod
    def parse(cls, body: bytes | str, *, origin: str | None = None) -> Checkpoint:
        """Parse a checkpoint body (a note's text), strictly; ``origin`` if given must match.

        >>> Checkpoint.parse(b"corridor.eu/DE/ledger\\n0\\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\\n").tree_size
        0
        """
        text = decode_text("checkpoint", body)
        if not text.endswith("\n"):
            raise FormatError("checkpoint: got text without a final newline, want every line to end in '\\n'")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise FormatError(f"checkpoint: got {len(lines)} lines, want at least 3 (origin, tree size, root hash)")
        for number, line in enumerate(lines, start=1):
            if not line:
                raise FormatError(f"checkpoint line {number}: got an empty line, want a non-empty one")
        first, size, root, *extensions = lines
        if origin is not None and first != origin:
            raise FormatError(f"checkpoint origin: got {first!r}, want {origin!r}")
        if not _DECIMAL.fullmatch(size):
            raise FormatError(f"checkpoint tree size: got {size[:40]!r}, want ASCII decimal with no leading zero")
        return cls(first, int(size), decode_base64("checkpoint root hash", root), tuple(extensions))


def load_tree_head(tree_head: TreeHead | Mapping[str, Any]) -> TreeHead:
    """The :class:`TreeHead` of its wire shape; :class:`FormatError` naming the field if it does not fit."""
    if isinstance(tree_head, TreeHead):
        return tree_head
    try:
        return TreeHead.model_validate(tree_head)
    except ValidationError as exc:
        raise FormatError(f"tree head: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc


def ledger_verifier(site: str, public_key: Ed25519PublicKey) -> NoteVerifier:
    """The note verifier of a site's ledger key: name = origin, type 0x01."""
    return NoteVerifier(origin(site), public_key, ED25519)


def witness_verifier(site: str, public_key: Ed25519PublicKey) -> NoteVerifier:
    """The cosignature verifier of a site's ledger key acting as witness: ``corridor.eu/<site>/witness``, type 0x04."""
    return NoteVerifier(witness_name(site), public_key, COSIGNATURE_V1)


def sign_checkpoint(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> str:
    """The signed note a ledger serves at ``/audit/checkpoint``: the body and its ledger signature line.

    The key name is the checkpoint's origin.
    """
    body = checkpoint.body()
    return str(Note(body.decode("utf-8"), (sign_note(body, private_key, checkpoint.origin),)))


def sign_tree_head_checkpoint(site: str, tree_head: TreeHead | Mapping[str, Any], private_key: Ed25519PrivateKey) -> str:
    """The checkpoint note of a site's JSON tree head, signed by the ledger key that signed the head.

    Raises :class:`SigningKeyError` when ``private_key`` is not the head's key.
    """
    head = load_tree_head(tree_head)
    want = ledger_key_id(private_key.public_key())
    if head.key_id != want:
        raise SigningKeyError(f"tree head of size {head.tree_size}: key_id got {head.key_id}, want {want}")
    return sign_checkpoint(Checkpoint.of_tree_head(site, head), private_key)


def verify_checkpoint(note: bytes | str | Note, public_key: Ed25519PublicKey, *, site: str) -> Checkpoint:
    """The checkpoint of ``site``'s ledger in ``note``, once its ledger signature verifies.

    Other signature lines (cosignatures, other keys) are ignored. Raises
    :class:`FormatError` or :class:`SignatureError`.
    """
    opened, _ = open_note(note, [ledger_verifier(site, public_key)])
    return Checkpoint.parse(opened.text, origin=origin(site))


def cosign(body: bytes, private_key: Ed25519PrivateKey, name: str, timestamp: int) -> NoteSignature:
    """The ``cosignature/v1`` (type 0x04) line of key ``name`` over a checkpoint body, made at ``timestamp``.

    ``body`` is the whole note text of the checkpoint (checked to be one).
    """
    Checkpoint.parse(body)
    verifier = NoteVerifier(name, private_key.public_key(), COSIGNATURE_V1)
    signature = private_key.sign(cosigned_message(body, timestamp))
    return NoteSignature(name, verifier.key_id, timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature)


def add_cosignature(
    note: bytes | str | Note, private_key: Ed25519PrivateKey, *, site: str, timestamp: int
) -> str:
    """``note`` (a checkpoint) with ``site``'s ``cosignature/v1`` line added (replacing an older one of that key)."""
    parsed = note if isinstance(note, Note) else Note.parse(note)
    line = cosign(parsed.text.encode("utf-8"), private_key, witness_name(site), timestamp)
    return str(parsed.with_signature(line))


def verify_cosignature(note: bytes | str | Note, public_key: Ed25519PublicKey, *, site: str) -> int:
    """The timestamp of ``site``'s verified ``cosignature/v1`` on the checkpoint ``note``.

    Raises :class:`FormatError` if the note is not a checkpoint, and
    :class:`SignatureError` if it carries no valid cosignature of that key.
    """
    opened, verified = open_note(note, [witness_verifier(site, public_key)])
    Checkpoint.parse(opened.text)
    return cosignature_timestamp(verified[0])
