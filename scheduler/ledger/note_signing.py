"""Signing and verifying C2SP signed notes: verifier keys, the two signature types, the verification rules.

Two signature types, each an Ed25519 signature after the 4-byte key id:

- **Ed25519** (type ``0x01``, c2sp.org/signed-note): the 64-byte signature
  over the note text;
- **cosignature/v1** (type ``0x04``, c2sp.org/tlog-cosignature):
  ``u64 big-endian timestamp ‖ 64-byte signature`` over::

      cosignature/v1\\n
      time <unix seconds, decimal>\\n
      <the whole note text, extension lines included>

- **Verifier key** (c2sp.org/signed-note, "vkey"):
  ``<key name>+<8 hex digits of the key id>+<base64(type byte ‖ public key)>``.

Verification follows the signed-note rules: signature lines of unknown keys
(name and key id not both known) are ignored; a known key's signature that
fails rejects the whole note; a note with no verified signature of a known
key is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from scheduler.ledger.exceptions import FormatError, SignatureError
from scheduler.ledger.note import (
    COSIGNATURE_V1,
    ED25519,
    Note,
    NoteSignature,
    check_key_name,
    decode_base64,
    encode_base64,
    note_key_id,
    raw_public_key,
)

TIMESTAMP_SIZE = 8
"""Bytes of the big-endian timestamp that opens a ``cosignature/v1`` signature."""

SIGNATURE_SIZE = 64
"""Bytes of an Ed25519 signature."""

MAX_TIMESTAMP = 2**63 - 1
"""Largest timestamp a ``cosignature/v1`` may carry."""

_COSIGNATURE_HEADER = b"cosignature/v1\n"
_HEX8 = re.compile(r"[0-9a-f]{8}")


def cosigned_message(body: bytes, timestamp: int) -> bytes:
    """What a ``cosignature/v1`` signs: ``cosignature/v1\\ntime <timestamp>\\n`` then the checkpoint body.

    >>> cosigned_message(b"example.com/behind-the-sofa\\n20852163\\nCsUY=\\n", 1679315147)
    b'cosignature/v1\\ntime 1679315147\\nexample.com/behind-the-sofa\\n20852163\\nCsUY=\\n'
    """
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise FormatError(f"cosignature timestamp: got {timestamp}, want 0 <= timestamp <= 2**63 - 1")
    return _COSIGNATURE_HEADER + b"time %d\n" % timestamp + body


def cosignature_timestamp(signature: NoteSignature) -> int:
    """The unix time a ``cosignature/v1`` line says it was made (its first 8 bytes after the key id).

    Does not verify the signature.
    """
    if len(signature.signature) != TIMESTAMP_SIZE + SIGNATURE_SIZE:
        raise FormatError(
            f"cosignature of {signature.name}: got {len(signature.signature)} bytes after the key id, "
            f"want {TIMESTAMP_SIZE + SIGNATURE_SIZE} (timestamp and Ed25519 signature)"
        )
    timestamp = int.from_bytes(signature.signature[:TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise FormatError(f"cosignature of {signature.name}: got timestamp {timestamp}, want <= 2**63 - 1")
    return timestamp


@dataclass(frozen=True)
class NoteVerifier:
    """A known key: name, Ed25519 public key, and signature type (:data:`ED25519` or :data:`COSIGNATURE_V1`)."""

    name: str
    public_key: Ed25519PublicKey
    signature_type: int = ED25519

    def __post_init__(self) -> None:
        check_key_name(self.name)
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
        material = bytes([self.signature_type]) + raw_public_key(self.public_key)
        return f"{self.name}+{self.key_id:08x}+{encode_base64(material)}"

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
        check_key_name(name)
        if not _HEX8.fullmatch(hex_id):
            raise FormatError(f"vkey key id: got {hex_id!r}, want 8 lowercase hex digits")
        material = decode_base64("vkey public key", encoded)
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
            if len(sig) != TIMESTAMP_SIZE + SIGNATURE_SIZE:
                return False
            timestamp = int.from_bytes(sig[:TIMESTAMP_SIZE], "big")
            if timestamp > MAX_TIMESTAMP:
                return False
            message, sig = cosigned_message(text, timestamp), sig[TIMESTAMP_SIZE:]
        else:
            if len(sig) != SIGNATURE_SIZE:
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


def sign_note(text: bytes | str, private_key: Ed25519PrivateKey, name: str) -> NoteSignature:
    """The Ed25519 (type 0x01) signature line of key ``name`` over the note text ``text``."""
    raw = text if isinstance(text, bytes) else text.encode("utf-8")
    verifier = NoteVerifier(name, private_key.public_key(), ED25519)
    return NoteSignature(name, verifier.key_id, private_key.sign(raw))
