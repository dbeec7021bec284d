"""Crisis declaration steps signed by the acting site: their wire shape, signing and verification.

Across the border the two-person rule is one person per site: an operator
declares at one site, an operator of the other site approves there, and
either site may revoke. Each step is signed by the acting site's ledger key
(Ed25519) and verified by the other site before it counts. Pure: no HTTP, no
storage; the peer link carries the JSON and the crisis registry keeps it.

A signed step on the wire (every field required, no other)::

    {"type": "corridor.eu/crisis-step/v1",
     "declaration_id": "crisis-…", "action": "declare" | "approve" | "revoke",
     "site": "FR" | "DE", "operator": "…", "timestamp": "2026-01-02T03:04:05.000006Z",
     "declaration_digest": "<hex SHA-256 of the declaration body>",
     "scope": {"tenants", "markings", "models", "directions"}, "reason": "…",
     "valid_from": "…Z", "valid_until": "…Z",
     "key_id": "<hex SHA-256 of the acting site's raw ledger public key>",
     "signature": "<base64 Ed25519 over the canonical JSON of every other field>"}

The *declaration body* is ``{"id", "scope", "reason", "valid_from",
"valid_until"}``; its digest is the lowercase hex SHA-256 of its canonical
JSON, so an approval names exactly what was declared. The ``type`` field
keeps these signatures apart from the ledger key's other signed JSON (tree
heads, witness cosignatures), whose keys differ.

The rule that makes a declaration active from its verified steps is
:mod:`~scheduler.crisis.declaration_rule`.

Errors::

    StepError
    ├── StepFormatError      a step that does not parse, or whose digest is not its body's;
    │                        also a ValueError
    └── StepSignatureError   a step not signed by the acting site's ledger key (forged or altered),
                             or by a site with no configured key
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from policies import Declaration
from policies.bundle import Scope
from policies.canonical import canonical_json, sha256_hex
from scheduler.ledger.entry import TIMESTAMP_PATTERN, format_timestamp
from scheduler.ledger.exceptions import FormatError, SigningKeyError
from scheduler.ledger.signing import PublicKey, key_id
from scheduler.ledger.witness import load_public_key

STEP_TYPE = "corridor.eu/crisis-step/v1"
"""The ``type`` of every signed step: what the signature is a statement of."""

ACTIONS = ("declare", "approve", "revoke")
SITES = ("FR", "DE")
Action = Literal["declare", "approve", "revoke"]

_STEP_KEYS = frozenset({
    "type", "declaration_id", "action", "site", "operator", "timestamp", "declaration_digest",
    "scope", "reason", "valid_from", "valid_until",
})
_SIGNED_KEYS = _STEP_KEYS | {"key_id", "signature"}
_TIMESTAMP = re.compile(TIMESTAMP_PATTERN)
_HEX64 = re.compile(r"[0-9a-f]{64}")

SiteKeys = Mapping[str, Ed25519PublicKey | PublicKey | Mapping[str, Any]]
"""The ledger public key of each site, by site: ``{"FR": …, "DE": …}``."""


class StepError(Exception):
    """Base class of signed-step errors."""


class StepFormatError(StepError, ValueError):
    """A step that does not parse, or whose digest is not the digest of the body it carries."""


class StepSignatureError(StepError):
    """A step that is not signed by the acting site's ledger key: forged or altered, or of a site with no key."""


def step_timestamp(name: str, value: str | dt.datetime) -> str:
    """``value`` as a ledger timestamp (``2026-01-02T03:04:05.000006Z``); :class:`StepFormatError` naming ``name``."""
    if isinstance(value, dt.datetime):
        try:
            return format_timestamp(value)
        except ValueError as exc:
            raise StepFormatError(f"{name}: {exc}") from exc
    if not isinstance(value, str) or not _TIMESTAMP.fullmatch(value):
        raise StepFormatError(f"{name}: got {value!r}, want UTC RFC 3339 like 2026-01-02T03:04:05.000006Z")
    return value


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise StepFormatError(f"{name}: got {value!r}, want non-empty text")
    return value


@dataclass(frozen=True)
class DeclarationBody:
    """What both sites agree to: id, scope, reason and window (timestamps in the ledger's format)."""

    id: str
    scope: Mapping[str, Any]
    reason: str
    valid_from: str
    valid_until: str

    def __post_init__(self) -> None:
        _text("declaration id", self.id)
        _text("reason", self.reason)
        if not isinstance(self.scope, Mapping):
            raise StepFormatError(f"scope: got {type(self.scope).__name__}, want an object")
        try:
            Scope.model_validate(self.scope)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise StepFormatError(f"scope.{where}: {first['msg']}") from exc
        object.__setattr__(self, "scope", json.loads(canonical_json(dict(self.scope))))
        object.__setattr__(self, "valid_from", step_timestamp("valid_from", self.valid_from))
        object.__setattr__(self, "valid_until", step_timestamp("valid_until", self.valid_until))
        if self.valid_until <= self.valid_from:
            raise StepFormatError(f"valid_until: got {self.valid_until}, want after valid_from {self.valid_from}")

    @classmethod
    def of(cls, declaration: Declaration) -> DeclarationBody:
        """The body of a declaration of the rulebook (e.g. ``CrisisRecord.declaration()``)."""
        return cls(declaration.id, declaration.scope.model_dump(exclude_defaults=True), declaration.reason,
                   format_timestamp(declaration.valid_from), format_timestamp(declaration.valid_until))

    def to_json(self) -> dict[str, Any]:
        """``{"id", "scope", "reason", "valid_from", "valid_until"}``."""
        return {"id": self.id, "scope": dict(self.scope), "reason": self.reason,
                "valid_from": self.valid_from, "valid_until": self.valid_until}

    def digest(self) -> str:
        """Lowercase hex SHA-256 of the canonical JSON of :meth:`to_json`."""
        return sha256_hex(canonical_json(self.to_json()))


@dataclass(frozen=True)
class CrisisStep:
    """One step of one declaration, by one operator at one site, before signing."""

    declaration_id: str
    action: Action
    site: str
    operator: str
    timestamp: str
    declaration_digest: str
    scope: Mapping[str, Any]
    reason: str
    valid_from: str
    valid_until: str

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise StepFormatError(f"action: got {self.action!r}, want one of {', '.join(ACTIONS)}")
        if self.site not in SITES:
            raise StepFormatError(f"site: got {self.site!r}, want one of {', '.join(SITES)}")
        _text("operator", self.operator)
        object.__setattr__(self, "timestamp", step_timestamp("timestamp", self.timestamp))
        if not isinstance(self.declaration_digest, str) or not _HEX64.fullmatch(self.declaration_digest):
            raise StepFormatError(f"declaration_digest: got {self.declaration_digest!r}, want 64 lowercase hex digits")
        body = self.body()  # checks id, scope, reason and window
        object.__setattr__(self, "scope", body.scope)
        if body.digest() != self.declaration_digest:
            raise StepFormatError(
                f"declaration_digest: got {self.declaration_digest}, want {body.digest()} (the digest of the body)"
            )

    @classmethod
    def create(
        cls, body: DeclarationBody, *, action: Action, site: str, operator: str, timestamp: str | dt.datetime
    ) -> CrisisStep:
        """The step ``action`` on ``body`` by ``operator`` at ``site``, at ``timestamp``."""
        return cls(body.id, action, site, operator, step_timestamp("timestamp", timestamp), body.digest(),
                   body.scope, body.reason, body.valid_from, body.valid_until)

    def body(self) -> DeclarationBody:
        """The declaration body this step carries."""
        return DeclarationBody(self.declaration_id, self.scope, self.reason, self.valid_from, self.valid_until)

    def to_json(self) -> dict[str, Any]:
        """The unsigned fields, ``type`` included."""
        return {
            "type": STEP_TYPE, "declaration_id": self.declaration_id, "action": self.action, "site": self.site,
            "operator": self.operator, "timestamp": self.timestamp, "declaration_digest": self.declaration_digest,
            "scope": dict(self.scope), "reason": self.reason, "valid_from": self.valid_from,
            "valid_until": self.valid_until,
        }

    def signed_bytes(self, key: str) -> bytes:
        """The exact bytes signed: canonical JSON of :meth:`to_json` plus ``key_id``."""
        return canonical_json({**self.to_json(), "key_id": key})


@dataclass(frozen=True)
class SignedStep:
    """A step with the acting site's ``key_id`` and ``signature``; :meth:`to_json` is the wire shape."""

    step: CrisisStep
    key_id: str
    signature: str

    def to_json(self) -> dict[str, Any]:
        return {**self.step.to_json(), "key_id": self.key_id, "signature": self.signature}

    @classmethod
    def from_json(cls, value: Mapping[str, Any] | str | bytes) -> SignedStep:
        """Parse the wire shape strictly (exact keys, types); no signature is checked here."""
        if isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise StepFormatError(f"signed step: got invalid JSON ({exc.msg} at {exc.pos})") from exc
        if not isinstance(value, Mapping):
            raise StepFormatError(f"signed step: got {type(value).__name__}, want a JSON object")
        keys = set(value)
        if keys != _SIGNED_KEYS:
            extra, missing = sorted(keys - _SIGNED_KEYS), sorted(_SIGNED_KEYS - keys)
            raise StepFormatError(f"signed step: got unknown fields {extra} and missing fields {missing}")
        if value["type"] != STEP_TYPE:
            raise StepFormatError(f"type: got {value['type']!r}, want {STEP_TYPE!r}")
        for name in ("key_id", "signature"):
            if not isinstance(value[name], str):
                raise StepFormatError(f"{name}: got {type(value[name]).__name__}, want a string")
        step = CrisisStep(**{k: value[k] for k in _STEP_KEYS - {"type"}})
        return cls(step, value["key_id"], value["signature"])


def sign_step(step: CrisisStep, private_key: Ed25519PrivateKey) -> SignedStep:
    """Sign ``step`` with the acting site's ledger key (who calls: the site where the operator acted)."""
    key = key_id(private_key.public_key())
    signature = private_key.sign(step.signed_bytes(key))
    return SignedStep(step, key, base64.b64encode(signature).decode("ascii"))


def verify_step(signed: SignedStep | Mapping[str, Any] | str | bytes, site_keys: SiteKeys) -> CrisisStep:
    """The step, once the ledger key of its acting ``site`` verifies it.

    Raises :class:`StepFormatError` when it does not parse and
    :class:`StepSignatureError` when it is forged or altered (key id or
    signature wrong, or no key for its site).
    """
    parsed = signed if isinstance(signed, SignedStep) else SignedStep.from_json(signed)
    step = parsed.step
    if step.site not in site_keys:
        raise StepSignatureError(f"{step.action} step of {step.declaration_id}: no ledger key for site {step.site}")
    try:
        public_key = load_public_key(site_keys[step.site])
    except (FormatError, SigningKeyError) as exc:
        raise StepSignatureError(f"ledger key of site {step.site} cannot be used: {exc}") from exc
    want = key_id(public_key)
    if parsed.key_id != want:
        raise StepSignatureError(
            f"{step.action} step of {step.declaration_id} by {step.site}: key_id got {parsed.key_id}, want {want}"
        )
    try:
        public_key.verify(base64.b64decode(parsed.signature, validate=True), step.signed_bytes(parsed.key_id))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise StepSignatureError(
            f"{step.action} step of {step.declaration_id} by {step.site}: signature does not verify"
        ) from exc
    return step
