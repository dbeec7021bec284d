"""Detached Ed25519 signatures of policy bundles, and the operator keys trusted to sign them.

A bundle file ``B.yaml`` is signed by a detached file ``B.yaml.sig`` holding
``{"signatures": [...]}``, one object per signer (a joint bundle of the corridor
carries one of an operator of each jurisdiction; a file with one bare object is
read as one signature)::

    {"algorithm": "Ed25519",
     "key_id": "<lowercase hex SHA-256 of the signer's raw 32-byte public key>",
     "signature": "<base64 Ed25519 signature of the bundle file's exact bytes>",
     "bundle_digest": "sha256:…"}

The signature covers the file's bytes exactly as stored (comments included),
so anyone can check it with the public key alone. ``bundle_digest`` (the
bundle's canonical digest) is informative and not signed. Who signed is
never taken from the signature file: the ``key_id`` is looked up among the
operator keys the running configuration trusts, and that entry names the
operator and jurisdiction.

Keys: private keys are unencrypted PKCS#8 PEM files (mode 0600); public keys
travel as :class:`OperatorKey` (``name``, ``jurisdiction``, ``public_key`` as
base64 of the raw 32 bytes), the same raw-key form as ``/audit/public-key``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from policies.canonical import sha256_hex
from policies.bundle import Jurisdiction
from policies.exceptions import BundleSignatureError

SIGNATURE_SUFFIX = ".sig"


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """Lowercase hex SHA-256 of the raw 32-byte public key."""
    return sha256_hex(_raw(public_key))


class OperatorKey(BaseModel):
    """A public key an operator signs bundles with, as listed in the running configuration.

    >>> key = OperatorKey(name="fr-ops", jurisdiction="FR", public_key="A" * 43 + "=")
    >>> len(key.key_id)
    64
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Who holds the private key, e.g. 'fr-ops-duty'.")
    jurisdiction: Jurisdiction = Field(description="The operator's jurisdiction.")
    public_key: str = Field(description="Raw 32-byte Ed25519 public key, base64.")

    @field_validator("public_key")
    @classmethod
    def _raw_key(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError("not base64; give the raw 32-byte key in base64, as "
                             "`corridor policy keygen` prints it") from exc
        if len(raw) != 32:
            raise ValueError(f"got {len(raw)} bytes, want the raw 32-byte Ed25519 key in base64")
        return value

    @property
    def key_id(self) -> str:
        return sha256_hex(base64.b64decode(self.public_key))

    def load(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(self.public_key))

    @classmethod
    def of(cls, name: str, jurisdiction: str, public_key: Ed25519PublicKey) -> OperatorKey:
        return cls(name=name, jurisdiction=jurisdiction,
                   public_key=base64.b64encode(_raw(public_key)).decode("ascii"))


class BundleSignature(BaseModel):
    """The detached signature file's content."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    signature: str = Field(description="Ed25519 signature of the bundle file's bytes, base64.")
    bundle_digest: str | None = Field(default=None, description="Informative; not signed.")

    def to_text(self) -> str:
        return json.dumps(self.model_dump(), indent=2) + "\n"


def signature_path(bundle_path: str | Path) -> Path:
    """Where a bundle's detached signature lives.

    >>> str(signature_path("bundles/prod.yaml"))
    'bundles/prod.yaml.sig'
    """
    path = Path(bundle_path)
    return path.with_name(path.name + SIGNATURE_SUFFIX)


def sign_bundle(data: bytes, private_key: Ed25519PrivateKey, *,
                bundle_digest: str | None = None) -> BundleSignature:
    """Sign a bundle file's exact bytes."""
    signature = private_key.sign(data)
    return BundleSignature(key_id=key_id_of(private_key.public_key()),
                           signature=base64.b64encode(signature).decode("ascii"),
                           bundle_digest=bundle_digest)


def parse_signature(text: str | bytes, source: str = "signature") -> BundleSignature:
    """Read a signature file's content; anything else is ``MALFORMED``."""
    try:
        return BundleSignature.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise BundleSignatureError("MALFORMED", f"{source}: {where}: {first['msg']}") from exc


def verify_bundle(data: bytes, signature: BundleSignature,
                  trusted: Sequence[OperatorKey]) -> OperatorKey:
    """The trusted key that signed ``data``; raises :class:`BundleSignatureError` otherwise."""
    key = next((k for k in trusted if k.key_id == signature.key_id), None)
    if key is None:
        known = ", ".join(f"{k.name} ({k.key_id[:12]}…)" for k in trusted) or "none"
        raise BundleSignatureError(
            "UNTRUSTED_KEY", f"signed by key {signature.key_id[:12]}…, which is not among the "
            f"trusted operator keys ({known}); list it under operator_keys in the configuration")
    try:
        raw = base64.b64decode(signature.signature, validate=True)
        key.load().verify(raw, data)
    except (binascii.Error, InvalidSignature) as exc:
        raise BundleSignatureError(
            "BAD_SIGNATURE", f"the signature of {key.name} does not match the bundle's bytes "
            f"(changed after signing?)") from exc
    return key


def parse_signatures(text: str | bytes, source: str = "signature") -> list[BundleSignature]:
    """Every signature of a ``.sig`` file (``{"signatures": [...]}``, or one bare object)."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise BundleSignatureError("MALFORMED", f"{source}: not JSON ({exc})") from exc
    if isinstance(document, dict) and set(document) == {"signatures"} and isinstance(document["signatures"], list):
        if not document["signatures"]:
            raise BundleSignatureError("MALFORMED", f"{source}: signatures: empty")
        return [parse_signature(json.dumps(item), f"{source}: signatures[{i}]")
                for i, item in enumerate(document["signatures"])]
    return [parse_signature(text, source)]


def signatures_text(signatures: Sequence[BundleSignature]) -> str:
    """The ``.sig`` file content for ``signatures``."""
    return json.dumps({"signatures": [s.model_dump() for s in signatures]}, indent=2) + "\n"


def with_signature(existing: Sequence[BundleSignature], new: BundleSignature) -> list[BundleSignature]:
    """``existing`` plus ``new`` (replacing an earlier signature of the same key)."""
    return [*(s for s in existing if s.key_id != new.key_id), new]


def verify_bundle_signers(path: str | Path,
                          trusted: Sequence[OperatorKey]) -> tuple[bytes, list[OperatorKey]]:
    """Read a bundle and its ``.sig``; every signature must verify with a trusted key.

    Returns the verified bytes (load the bundle from them, not by reading the file again)
    and the signers, in signature order.
    """
    path = Path(path)
    data = path.read_bytes()
    sig_path = signature_path(path)
    try:
        text = sig_path.read_text("utf-8")
    except FileNotFoundError as exc:
        raise BundleSignatureError(
            "UNSIGNED", f"{path} has no signature {sig_path.name}; sign it with "
            f"`corridor policy sign {path} --key <operator key.pem>`") from exc
    return data, [verify_bundle(data, signature, trusted)
                  for signature in parse_signatures(text, str(sig_path))]


def verify_bundle_file(path: str | Path, trusted: Sequence[OperatorKey]) -> tuple[bytes, OperatorKey]:
    """Read a bundle and its ``.sig``; return the verified bytes and its first signer (every
    signature must verify)."""
    data, signers = verify_bundle_signers(path, trusted)
    return data, signers[0]


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    """An Ed25519 private key from an unencrypted PKCS#8 PEM file."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: got a {type(key).__name__}, want an Ed25519 private key")
    return key


def write_private_key(path: str | Path) -> Ed25519PrivateKey:
    """Create a new Ed25519 key at ``path`` (mode 0600); FileExistsError if one is there."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return key
