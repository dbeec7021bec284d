"""The C2SP signed-note format (c2sp.org/signed-note): text, signature lines, key names and key ids.

A signed note is its text (ending in ``\\n``), one blank line, then one or
more signature lines ``— <key name> <base64(key id ‖ signature)>\\n`` (``—``
is U+2014). The key id is 4 bytes, big-endian:
``SHA-256(key name ‖ 0x0A ‖ signature type ‖ 32-byte public key)[:4]``. The
note is UTF-8 with no control character but ``\\n``; a key name is
non-empty, with no Unicode space and no ``+``.

This module only parses and writes the bytes, strictly; no signature is
checked here. Signing and verifying are in
:mod:`~scheduler.ledger.note_signing`, checkpoints in
:mod:`~scheduler.ledger.checkpoint`.

>>> note = Note.parse("hello\\n\\n— example.com/foo AAAAAQI=\\n")
>>> note.text, note.signatures[0].name, note.signatures[0].key_id
('hello\\n', 'example.com/foo', 1)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from scheduler.ledger.exceptions import FormatError

ED25519 = 0x01
"""Signed-note signature type of a plain Ed25519 note signature."""

COSIGNATURE_V1 = 0x04
"""Signed-note signature type of a timestamped Ed25519 ``cosignature/v1``."""

MAX_SIGNATURES = 100
"""Most signature lines a note may carry (the spec asks verifiers to accept at least 16)."""

EM_DASH = "\u2014"

CONTROL_CHARACTER = re.compile(r"[\x00-\x09\x0b-\x1f]")
"""Any control character a note may not carry (all but ``\\n``)."""

_SIG_PREFIX = EM_DASH + " "


def encode_base64(data: bytes) -> str:
    """Standard padded base64, as text.

    >>> encode_base64(b"\\x00\\x01")
    'AAE='
    """
    return base64.b64encode(data).decode("ascii")


def decode_base64(what: str, text: str) -> bytes:
    """Strict standard base64: padded, alphabet only, canonical (re-encodes to the same text).

    Raises :class:`FormatError` naming ``what`` otherwise.
    """
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FormatError(f"{what}: got {text[:60]!r}, want standard padded base64") from exc
    if encode_base64(data) != text:
        raise FormatError(f"{what}: got non-canonical base64 {text[:60]!r}, want {encode_base64(data)[:60]!r}")
    return data


def decode_text(what: str, data: bytes | str) -> str:
    """``data`` as text, once it is UTF-8 with no control character but ``\\n``; :class:`FormatError` naming ``what``."""
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
    bad = CONTROL_CHARACTER.search(text)
    if bad:
        raise FormatError(
            f"{what}: got control character {bad.group()!r} at offset {bad.start()}, want none but newline"
        )
    return text


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of an Ed25519 public key."""
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
        and CONTROL_CHARACTER.search(name) is None
    )


def check_key_name(name: str) -> str:
    """``name`` if :func:`valid_key_name`; :class:`FormatError` otherwise."""
    if not valid_key_name(name):
        raise FormatError(f"key name: got {name!r}, want a non-empty name with no space and no '+'")
    return name


def note_key_id(name: str, signature_type: int, public_key: Ed25519PublicKey | bytes) -> int:
    """``SHA-256(name ‖ 0x0A ‖ signature type ‖ public key)[:4]`` as a big-endian uint32.

    >>> key = bytes.fromhex("1a5cd907143c384c41e830c5bce12aa8817ec5649aaabf2c31388b35b2d744d6")
    >>> f"{note_key_id('PeterNeumann', ED25519, key):08x}"
    'c74f20a3'
    """
    raw = public_key if isinstance(public_key, bytes) else raw_public_key(public_key)
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([signature_type]) + raw).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: key name, key id (uint32) and the signature bytes after the key id."""

    name: str
    key_id: int
    signature: bytes

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not 0 <= self.key_id < 2**32:
            raise FormatError(f"key id: got {self.key_id}, want a 32-bit unsigned int")
        if not self.signature:
            raise FormatError("signature: got 0 bytes, want at least 1 after the key id")

    def line(self) -> str:
        """``— <name> <base64(key id ‖ signature)>`` and a newline."""
        return f"{_SIG_PREFIX}{self.name} {encode_base64(self.key_id.to_bytes(4, 'big') + self.signature)}\n"

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
        check_key_name(name)
        raw = decode_base64(f"signature of {name}", encoded)
        if len(raw) < 5:
            raise FormatError(f"signature of {name}: got {len(raw)} bytes, want a 4-byte key id and a signature")
        return cls(name, int.from_bytes(raw[:4], "big"), raw[4:])


@dataclass(frozen=True)
class Note:
    """A signed note: its text (ending in a newline) and its signature lines, in order."""

    text: str
    signatures: tuple[NoteSignature, ...] = ()

    def __post_init__(self) -> None:
        decode_text("note text", self.text)
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
        text = decode_text("signed note", data)
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
