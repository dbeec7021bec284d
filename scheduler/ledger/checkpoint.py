"""C2SP checkpoints, signed notes and cosignatures of the ledger's tree heads.

Standard transparency tooling reads a log's tree head as a *checkpoint* in a
*signed note*, and witnesses add *cosignatures* to it. The exact bytes, from
the specifications in the public ``C2SP/C2SP`` repository:

- **Checkpoint body** (c2sp.org/tlog-checkpoint): lines ending in ``\\n``::

      corridor.eu/FR/ledger            origin: corridor.eu/<site>/ledger
      20852163                         tree size, ASCII decimal, no leading zero
      CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=   base64 of the 32-byte RFC 6962 root

  Further lines are optional extension lines (non-empty); Corridor writes none.

- **Signed note** (c2sp.org/signed-note): the text (ending in ``\\n``), one
  blank line, then one or more signature lines
  ``— <key name> <base64(key id ‖ signature)>\\n`` (``—`` is U+2014). The key
  id is 4 bytes, big-endian. The note is UTF-8 with no control character but
  ``\\n``; a key name is non-empty, with no Unicode space and no ``+``. The
  ledger signs with Ed25519 (signature type ``0x01``) over the note text; its
  key name is the origin and its key id is
  ``SHA-256(key name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)[:4]``.

- **Cosignature** (c2sp.org/tlog-cosignature, ``cosignature/v1``, signature
  type ``0x04``): a witnessing site adds a signature line named
  ``corridor.eu/<site>/witness`` whose bytes are
  ``key id ‖ u64 big-endian timestamp ‖ 64-byte Ed25519 signature`` over::

      cosignature/v1\\n
      time <unix seconds, decimal>\\n
      <the whole checkpoint body, extension lines included>

  with key id ``SHA-256(key name ‖ 0x0A ‖ 0x04 ‖ 32-byte public key)[:4]``.

- **Verifier key** (c2sp.org/signed-note, "vkey"):
  ``<key name>+<8 hex digits of the key id>+<base64(type byte ‖ public key)>``.

Verification follows the signed-note rules: signature lines of unknown keys
(name and key id not both known) are ignored; a known key's signature that
fails rejects the whole note; a note with no verified signature of a known
key is rejected.

The site's one Ed25519 ledger key makes three kinds of signature, kept apart
by their messages: the JSON tree head (canonical JSON starting ``{"key_id"``),
the checkpoint note (text starting with the origin line ``corridor.eu/``) and
the cosignature (message starting ``cosignature/v1\\n``).

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

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from scheduler.ledger.exceptions import FormatError, SignatureError, SigningKeyError
from scheduler.ledger.merkle import HASH_SIZE
from scheduler.ledger.signing import TreeHead
from scheduler.ledger.signing import key_id as ledger_key_id

SITES = ("FR", "DE")
"""The sites of the corridor; each names its ledger's origin and its witness."""

ED25519 = 0x01
"""Signed-note signature type of a plain Ed25519 note signature."""

COSIGNATURE_V1 = 0x04
"""Signed-note signature type of a timestamped Ed25519 ``cosignature/v1``."""

MAX_SIGNATURES = 100
"""Most signature lines a note may carry (the spec asks verifiers to accept at least 16)."""

EM_DASH = "\u2014"
_SIG_PREFIX = EM_DASH + " "
_COSIGNATURE_HEADER = b"cosignature/v1\n"
_ED25519_SIGNATURE_SIZE = 64
_TIMESTAMP_SIZE = 8
_MAX_TIMESTAMP = 2**63 - 1
_MAX_TREE_SIZE = 2**64 - 1
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_HEX8 = re.compile(r"[0-9a-f]{8}")


def _check_site(site: str) -> str:
    if site not in SITES:
        raise FormatError(f"site: got {site!r}, want one of {', '.join(SITES)}")
    return site


def origin(site: str) -> str:
    """The checkpoint origin (and ledger key name) of a site's ledger.

    >>> origin("DE")
    'corridor.eu/DE/ledger'
    """
    return f"corridor.eu/{_check_site(site)}/ledger"


def witness_name(site: str) -> str:
    """The key name of a site's cosignatures on its peer's checkpoints.

    >>> witness_name("FR")
    'corridor.eu/FR/witness'
    """
    return f"corridor.eu/{_check_site(site)}/witness"


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(what: str, text: str) -> bytes:
    """Strict standard base64: padded, alphabet only, canonical (re-encodes to the same text)."""
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{what}: got {text[:60]!r}, want standard padded base64") from exc
    if _b64encode(data) != text:
        raise FormatError(f"{what}: got non-canonical base64 {text[:60]!r}, want {_b64encode(data)[:60]!r}")
    return data


def _raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def valid_key_name(name: str) -> bool:
    """Whether ``name`` may name a note key: non-empty, no Unicode space, no ``+``, no control character.

    >>> valid_key_name("corridor.eu/FR/ledger"), valid_key_name("a b"), valid_key_name("a+b")
    (True, False, False)
    """
    return (
        bool(name)
        and "+" not in name
        and not any(c.isspace() for c in name)
        and _CONTROL.search(name) is None
    )


def _check_key_name(name: str) -> str:
    if not valid_key_name(name):
        raise FormatError(f"key name: got {name!r}, want a non-empty name with no space and no '+'")
    return name


def note_key_id(name: str, signature_type: int, public_key: Ed25519PublicKey | bytes) -> int:
    """``SHA-256(name ‖ 0x0A ‖ signature type ‖ public key)[:4]`` as a big-endian uint32.

    >>> key = bytes.fromhex("1a5cd907143c384c41e830c5bce12aa8817ec5649aaabf2c31388b35b2d744d6")
    >>> f"{note_key_id('PeterNeumann', ED25519, key):08x}"
    'c74f20a3'
    """
    raw = public_key if isinstance(public_key, bytes) else _raw_public_key(public_key)
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([signature_type]) + raw).digest()
    return int.from_bytes(digest[:4], "big")


# --- checkpoint ---------------------------------------------------------------------------------


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
        if not self.origin or "\n" in self.origin or _CONTROL.search(self.origin):
            raise FormatError(f"checkpoint origin: got {self.origin!r}, want a non-empty line")
        if isinstance(self.tree_size, bool) or not isinstance(self.tree_size, int):
            raise FormatError(f"checkpoint tree size: got {self.tree_size!r}, want an int")
        if not 0 <= self.tree_size <= _MAX_TREE_SIZE:
            raise FormatError(f"checkpoint tree size: got {self.tree_size}, want 0 <= size < 2**64")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            got = len(self.root_hash) if isinstance(self.root_hash, bytes) else type(self.root_hash).__name__
            raise FormatError(f"checkpoint root hash: got {got} bytes, want {HASH_SIZE}")
        for number, line in enumerate(self.extensions, start=4):
            if not line or "\n" in line or _CONTROL.search(line):
                raise FormatError(f"checkpoint line {number}: got {line!r}, want a non-empty extension line")

    def body(self) -> bytes:
        """The note text: origin, size, base64 root and any extension lines, each ending in a newline."""
        lines = [self.origin, str(self.tree_size), _b64encode(self.root_hash), *self.extensions]
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
        text = _decode_text("checkpoint", body)
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
        return cls(first, int(size), _b64decode("checkpoint root hash", root), tuple(extensions))


def load_tree_head(tree_head: TreeHead | Mapping[str, Any]) -> TreeHead:
    """The :class:`TreeHead` of its wire shape; :class:`FormatError` naming the field if it does not fit."""
    if isinstance(tree_head, TreeHead):
        return tree_head
    try:
        return TreeHead.model_validate(tree_head)
    except ValidationError as exc:
        raise FormatError(f"tree head: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from exc


def _decode_text(what: str, data: bytes | str) -> str:
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise FormatError(f"{what}: got text that is not valid Unicode, want UTF-8") from exc
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{what}: got invalid UTF-8 at byte {exc.start}, want UTF-8") from exc
    bad = _CONTROL.search(text)
    if bad:
        raise FormatError(
            f"{what}: got control character {bad.group()!r} at offset {bad.start()}, want none but newline"
        )
    return text


# --- signed note --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key id (uint32) and the signature bytes after the key id."""

    name: str
    key_id: int
    signature: bytes

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if not 0 <= self.key_id < 2**32:
            raise FormatError(f"key id: got {self.key_id}, want a 32-bit unsigned int")
        if not self.signature:
            raise FormatError("signature: got 0 bytes, want at least 1 after the key id")

    def line(self) -> str:
        """``— <name> <base64(key id ‖ signature)>`` and a newline."""
        return f"{_SIG_PREFIX}{self.name} {_b64encode(self.key_id.to_bytes(4, 'big') + self.signature)}\n"

    @classmethod
    def parse_line(cls, line: str) -> NoteSignature:
        """Parse one signature line, with or without its final newline.

        >>> NoteSignature.parse_line("— example.com/foo AAAAAQI=").key_id
        1
        """
        line = line.removesuffix("\n")
        if not line.startswith(_SIG_PREFIX):
            raise FormatError(f"signature line: got {line[:40]!r}, want '— <key name> <base64 signature>'")
        name, space, encoded = line[len(_SIG_PREFIX):].partition(" ")
        if not space or not encoded:
            raise FormatError(f"signature line: got {line[:60]!r}, want a key name, one space, a base64 signature")
        _check_key_name(name)
        raw = _b64decode(f"signature of {name}", encoded)
        if len(raw) < 5:
            raise FormatError(f"signature of {name}: got {len(raw)} bytes, want a 4-byte key id and a signature")
        return cls(name, int.from_bytes(raw[:4], "big"), raw[4:])


@dataclass(frozen=True)
class Note:
    """A signed note: its text (ending in a newline) and its signature lines, in order."""

    text: str
    signatures: tuple[NoteSignature, ...] = ()

    def __post_init__(self) -> None:
        _decode_text("note text", self.text)
        if not self.text.endswith("\n"):
            raise FormatError("note text: got no final newline, want text ending in '\\n'")

    def encode(self) -> bytes:
        """Text, a blank line, the signature lines: the bytes served as ``text/plain``."""
        return (self.text + "\n" + "".join(sig.line() for sig in self.signatures)).encode("utf-8")

    def __str__(self) -> str:
        return self.encode().decode("utf-8")

    def with_signature(self, signature: NoteSignature) -> Note:
        """This note with ``signature`` appended, replacing any earlier line of the same key (name and id)."""
        kept = [s for s in self.signatures if (s.name, s.key_id) != (signature.name, signature.key_id)]
        return Note(self.text, (*kept, signature))

    @classmethod
    def parse(cls, data: bytes | str) -> Note:
        """Parse a signed note strictly (signed-note rules); no signature is verified here."""
        text = _decode_text("signed note", data)
        split = text.rfind("\n\n")
        if split < 0:
            raise FormatError("signed note: got no blank line, want text, a blank line, then signature lines")
        body, lines = text[: split + 1], text[split + 2 :]
        if not lines:
            raise FormatError("signed note: got no signature line after the blank line, want at least one")
        if not lines.endswith("\n"):
            raise FormatError("signed note: got a last signature line without a newline, want '\\n' at the end")
        rows = lines[:-1].split("\n")
        if len(rows) > MAX_SIGNATURES:
            raise FormatError(f"signed note: got {len(rows)} signature lines, want at most {MAX_SIGNATURES}")
        return cls(body, tuple(NoteSignature.parse_line(row) for row in rows))


@dataclass(frozen=True)
class NoteVerifier:
    """A known key: name, Ed25519 public key, and signature type (:data:`ED25519` or :data:`COSIGNATURE_V1`)."""

    name: str
    public_key: Ed25519PublicKey
    signature_type: int = ED25519

    def __post_init__(self) -> None:
        _check_key_name(self.name)
        if self.signature_type not in (ED25519, COSIGNATURE_V1):
            raise FormatError(
                f"signature type: got {self.signature_type:#04x}, want {ED25519:#04x} (Ed25519) "
                f"or {COSIGNATURE_V1:#04x} (cosignature/v1)"
            )

    @property
    def key_id(self) -> int:
        """``SHA-256(name ‖ 0x0A ‖ type ‖ public key)[:4]``."""
        return note_key_id(self.name, self.signature_type, self.public_key)

    def vkey(self) -> str:
        """The verifier key ``<name>+<hex key id>+<base64(type ‖ public key)>`` for other tools."""
        material = bytes([self.signature_type]) + _raw_public_key(self.public_key)
        return f"{self.name}+{self.key_id:08x}+{_b64encode(material)}"

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse a verifier key (types 0x01 and 0x04), checking its key id.

        >>> NoteVerifier.from_vkey("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k").name
        'example.com/foo'
        """
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise FormatError(f"vkey: got {vkey[:60]!r}, want '<name>+<8 hex digits>+<base64 key>'")
        name, hex_id, encoded = parts
        _check_key_name(name)
        if not _HEX8.fullmatch(hex_id):
            raise FormatError(f"vkey key id: got {hex_id!r}, want 8 lowercase hex digits")
        material = _b64decode("vkey public key", encoded)
        if len(material) != 33:
            raise FormatError(f"vkey public key: got {len(material)} bytes, want 33 (type byte and Ed25519 key)")
        try:
            verifier = cls(name, Ed25519PublicKey.from_public_bytes(material[1:]), material[0])
        except ValueError as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"vkey public key: {exc}") from exc
        if f"{verifier.key_id:08x}" != hex_id:
            raise FormatError(f"vkey key id: got {hex_id}, want {verifier.key_id:08x} (hash of name, type and key)")
        return verifier

    def matches(self, signature: NoteSignature) -> bool:
        """Whether ``signature`` claims this key (name and key id both match)."""
        return signature.name == self.name and signature.key_id == self.key_id

    def verify(self, text: bytes, signature: NoteSignature) -> bool:
        """Whether ``signature`` (of this key) is valid over the note text ``text``."""
        sig = signature.signature
        if self.signature_type == COSIGNATURE_V1:
            if len(sig) != _TIMESTAMP_SIZE + _ED25519_SIGNATURE_SIZE:
                return False
            timestamp = int.from_bytes(sig[:_TIMESTAMP_SIZE], "big")
            if timestamp > _MAX_TIMESTAMP:
                return False
            message, sig = cosigned_message(text, timestamp), sig[_TIMESTAMP_SIZE:]
        else:
            if len(sig) != _ED25519_SIGNATURE_SIZE:
                return False
            message = text
        try:
            self.public_key.verify(sig, message)
        except InvalidSignature:
            return False
        return True


def open_note(data: bytes | str | Note, verifiers: Iterable[NoteVerifier]) -> tuple[Note, list[NoteSignature]]:
    """Parse ``data`` and verify the signatures of known keys; return the note and the verified lines.

    Signature lines whose name and key id do not both match a verifier are
    ignored. Raises :class:`FormatError` on malformed bytes and
    :class:`SignatureError` when a known key's signature fails or no known
    key signed.
    """
    note = data if isinstance(data, Note) else Note.parse(data)
    known = list(verifiers)
    text = note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    for signature in note.signatures:
        for verifier in known:
            if verifier.matches(signature):
                if not verifier.verify(text, signature):
                    raise SignatureError(
                        f"signed note: signature of {signature.name}+{signature.key_id:08x} does not verify"
                    )
                if signature not in verified:
                    verified.append(signature)
    if not verified:
        names = ", ".join(f"{v.name}+{v.key_id:08x}" for v in known) or "none given"
        raise SignatureError(f"signed note: got no signature of a known key, want one of {names}")
    return note, verified


# --- signing and cosigning ----------------------------------------------------------------------


def sign_note(text: bytes | str, private_key: Ed25519PrivateKey, name: str) -> NoteSignature:
    """The Ed25519 (type 0x01) signature line of key ``name`` over the note text ``text``."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8")
    verifier = NoteVerifier(name, private_key.public_key(), ED25519)
    return NoteSignature(name, verifier.key_id, private_key.sign(raw))


def cosigned_message(body: bytes, timestamp: int) -> bytes:
    """What a ``cosignature/v1`` signs: ``cosignature/v1\\ntime <timestamp>\\n`` then the checkpoint body.

    >>> cosigned_message(b"example.com/behind-the-sofa\\n20852163\\nCsUY=\\n", 1679315147)
    b'cosignature/v1\\ntime 1679315147\\nexample.com/behind-the-sofa\\n20852163\\nCsUY=\\n'
    """
    if not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise FormatError(f"cosignature timestamp: got {timestamp}, want 0 <= timestamp <= 2**63 - 1")
    return _COSIGNATURE_HEADER + b"time %d\n" % timestamp + body


def cosign(body: bytes, private_key: Ed25519PrivateKey, name: str, timestamp: int) -> NoteSignature:
    """The ``cosignature/v1`` (type 0x04) line of key ``name`` over a checkpoint body, made at ``timestamp``.

    ``body`` is the whole note text of the checkpoint (checked to be one).
    """
    Checkpoint.parse(body)
    verifier = NoteVerifier(name, private_key.public_key(), COSIGNATURE_V1)
    signature = private_key.sign(cosigned_message(body, timestamp))
    return NoteSignature(name, verifier.key_id, timestamp.to_bytes(_TIMESTAMP_SIZE, "big") + signature)


def cosignature_timestamp(signature: NoteSignature) -> int:
    """The unix time a ``cosignature/v1`` line says it was made (its first 8 bytes after the key id).

    Does not verify the signature.
    """
    if len(signature.signature) != _TIMESTAMP_SIZE + _ED25519_SIGNATURE_SIZE:
        raise FormatError(
            f"cosignature of {signature.name}: got {len(signature.signature)} bytes after the key id, "
            f"want {_TIMESTAMP_SIZE + _ED25519_SIGNATURE_SIZE} (timestamp and Ed25519 signature)"
        )
    timestamp = int.from_bytes(signature.signature[:_TIMESTAMP_SIZE], "big")
    if timestamp > _MAX_TIMESTAMP:
        raise FormatError(f"cosignature of {signature.name}: got timestamp {timestamp}, want <= 2**63 - 1")
    return timestamp


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
