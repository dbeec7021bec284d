"""Ed25519 signing key and signed tree heads.

A tree head is ``{"tree_size", "root_hash", "timestamp", "key_id", "signature"}``:
``signature`` is the Ed25519 signature, base64 (standard alphabet, padded), of
the canonical JSON of the other four fields; ``key_id`` is the lowercase hex
SHA-256 of the raw 32-byte public key. The public key is published as
``{"key_id", "public_key"}`` with the raw key in base64.

The signing key lives in a PKCS#8 PEM file created with mode 0600 and
``O_EXCL`` (written to a private temporary file, then hard-linked into place),
so it is never readable by others and two processes never both create one.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from policies.canonical import canonical_json, sha256_hex
from scheduler.ledger.exceptions import SignatureError, SigningKeyError

KEY_FILENAME = "ledger-signing-key.pem"
"""File name of the signing key inside ``$CORRIDOR_HOME``."""

_HEX64 = r"^[0-9a-f]{64}$"


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey) -> str:
    """Lowercase hex SHA-256 of the raw 32-byte public key."""
    return sha256_hex(_raw(public_key))


class PublicKey(BaseModel):
    """The published verification key: ``{"key_id", "public_key"}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key_id: str = Field(pattern=_HEX64, description="Hex SHA-256 of the raw public key.")
    public_key: str = Field(description="Raw 32-byte Ed25519 public key, base64.")

    @classmethod
    def of(cls, public_key: Ed25519PublicKey) -> PublicKey:
        """The published form of ``public_key``."""
        return cls(key_id=key_id(public_key), public_key=base64.b64encode(_raw(public_key)).decode("ascii"))

    def load(self) -> Ed25519PublicKey:
        """The key itself, after checking that ``key_id`` is its hash."""
        try:
            raw = base64.b64decode(self.public_key, validate=True)
        except binascii.Error as exc:
            raise SigningKeyError(f"public_key: got invalid base64 {self.public_key!r}") from exc
        if len(raw) != 32:
            raise SigningKeyError(f"public_key: got {len(raw)} bytes, want 32")
        if sha256_hex(raw) != self.key_id:
            raise SigningKeyError(f"key_id: got {self.key_id}, want {sha256_hex(raw)} (SHA-256 of the public key)")
        return Ed25519PublicKey.from_public_bytes(raw)


class TreeHead(BaseModel):
    """A signed tree head; ``model_dump()`` is the wire shape."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tree_size: int = Field(ge=0, description="Number of leaves the root covers.")
    root_hash: str = Field(pattern=_HEX64, description="MTH of the first tree_size leaves, lowercase hex.")
    timestamp: str = Field(description="When the head was signed, UTC RFC 3339.")
    key_id: str = Field(pattern=_HEX64, description="Id of the signing key.")
    signature: str = Field(description="Ed25519 signature of signed_bytes(), base64.")

    def signed_bytes(self) -> bytes:
        """The exact bytes signed: canonical JSON of tree_size, root_hash, timestamp and key_id."""
        return _signed_bytes(self.tree_size, self.root_hash, self.timestamp, self.key_id)

    def verify(self, public_key: Ed25519PublicKey) -> None:
        """Raise :class:`SignatureError` unless ``public_key`` signed this head."""
        want = key_id(public_key)
        if self.key_id != want:
            raise SignatureError(f"tree head of size {self.tree_size}: key_id got {self.key_id}, want {want}")
        try:
            signature = base64.b64decode(self.signature, validate=True)
        except binascii.Error as exc:
            raise SignatureError(f"tree head of size {self.tree_size}: signature is not base64") from exc
        try:
            public_key.verify(signature, self.signed_bytes())
        except InvalidSignature as exc:
            raise SignatureError(f"tree head of size {self.tree_size}: signature does not verify") from exc


def _signed_bytes(tree_size: int, root_hash: str, timestamp: str, key: str) -> bytes:
    return canonical_json({"tree_size": tree_size, "root_hash": root_hash, "timestamp": timestamp, "key_id": key})


def sign_tree_head(private_key: Ed25519PrivateKey, tree_size: int, root_hash: bytes, timestamp: str) -> TreeHead:
    """Sign the head of the tree of ``tree_size`` leaves whose MTH is ``root_hash`` (raw bytes)."""
    key = key_id(private_key.public_key())
    root = root_hash.hex()
    signature = private_key.sign(_signed_bytes(tree_size, root, timestamp, key))
    return TreeHead(
        tree_size=tree_size,
        root_hash=root,
        timestamp=timestamp,
        key_id=key,
        signature=base64.b64encode(signature).decode("ascii"),
    )


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from a PKCS#8 PEM file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"cannot read signing key {path}: {exc.strerror}") from exc
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SigningKeyError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: got a {type(key).__name__}, want an Ed25519 private key")
    return key


def generate_signing_key(path: Path) -> Ed25519PrivateKey:
    """Create a new key at ``path`` (mode 0600); fail with FileExistsError if one is there."""
    path = Path(path)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temporary, path)  # atomic and never replaces an existing key
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return key


def load_or_generate_signing_key(path: Path) -> Ed25519PrivateKey:
    """Load the key at ``path``, creating it first if there is none (first start)."""
    path = Path(path)
    if not path.exists():
        try:
            return generate_signing_key(path)
        except FileExistsError:
            pass  # another process created it first
        except OSError as exc:
            raise SigningKeyError(f"cannot create signing key {path}: {exc.strerror}") from exc
    return load_signing_key(path)

