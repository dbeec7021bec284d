"""Who is calling: API keys (stored only as hashes) and optional OIDC bearer JWTs.

An API key reads ``cor_<key id>_<secret>``. The key store keeps, per key id,
the SHA-256 of the whole key and its record (:mod:`serving.gateway.keys`: who it
belongs to, name, expiry, revocation, last use, minimum marking); the presented
key's hash is compared with :func:`hmac.compare_digest`. A revoked or expired key
stops authenticating at once, on every worker sharing the key file. Plain keys
exist only at issue time (and in ``demo-keys.json`` written by ``corridor up``).

Roles: ``app`` (inference for its tenant), ``admin`` (batches and deployments
of its tenant), ``operator`` (belongs to a jurisdiction, not a tenant),
``auditor`` (read-only audit, scoped to tenants or ``*`` for all).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from policies import parse_marking
from policies.bundle import JURISDICTIONS
from serving.gateway.claims import ClaimNames, read_claims
from serving.gateway.keys import KeyFile, KeyRecord, utc_now

Role = Literal["app", "admin", "operator", "auditor"]
ROLES: tuple[str, ...] = ("app", "admin", "operator", "auditor")
ALL_TENANTS = "*"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    subject: str
    role: str
    tenant: str | None = None  # app and admin
    jurisdiction: str | None = None  # operator
    scope: tuple[str, ...] = ()  # auditor: tenant ids, or ("*",)
    minimum_marking: str | None = None  # the key's requests are treated at least at this marking

    @property
    def audit_scope(self) -> tuple[str, ...] | None:
        """Tenants an auditor may read; None means all."""
        return None if ALL_TENANTS in self.scope else self.scope


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """API keys by key id, hashes only, in a JSON file (mode 0600) when given a path.

    At a site of the corridor (``site``), key ids start with the site's code in lower case
    (``cor_fr…``), so a key presented at the other site is recognised as the other site's
    (:func:`issuing_site`) and the caller is told where to send it.

    Called by the gateway (:meth:`authenticate`, every request), by the operator API and
    ``corridor up`` (:meth:`create`, :meth:`issue`, :meth:`list`, :meth:`revoke`).
    ``clock`` returns the current UTC time. The last use of a key is written at most once
    per ``used_every_s`` seconds per key, so authenticating stays a read.
    """

    def __init__(self, path: Path | None = None, *, site: str | None = None,
                 clock: Callable[[], dt.datetime] = utc_now, used_every_s: float = 60.0) -> None:
        self.path = path
        self.site = site
        self.clock = clock
        self.used_every_s = used_every_s
        self._file = KeyFile(path)
        self._used: dict[str, dt.datetime] = {}

    def create(self, role: str, *, tenant: str | None = None, jurisdiction: str | None = None,
               scope: tuple[str, ...] = (), name: str | None = None,
               expires_at: dt.datetime | None = None, minimum_marking: str | None = None,
               created_by: str | None = None) -> tuple[KeyRecord, str]:
        """Create a key; return its record and the key in plain text (the only time it exists).
        Bad input is a ValueError naming the field."""
        if role not in ROLES:
            raise ValueError(f"role: unknown role {role!r}; roles: {', '.join(ROLES)}")
        if role in ("app", "admin") and not tenant:
            raise ValueError(f"tenant: role {role!r} needs a tenant")
        if role == "operator" and jurisdiction not in JURISDICTIONS:
            raise ValueError("jurisdiction: role 'operator' needs jurisdiction FR or DE")
        now = self.clock()
        if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
            raise ValueError(f"expires_at: got {expires_at.isoformat()}, want a time-zone-aware "
                             f"moment in the future")
        if minimum_marking is not None:
            marking = parse_marking(minimum_marking)  # UnknownMarkingError is a ValueError
            if not marking.placeable:
                raise ValueError(f"minimum_marking: {marking.id} is above restricted; nothing at "
                                 f"that level ever runs here")
            minimum_marking = marking.id
        key_id = (self.site.lower() + secrets.token_hex(5)) if self.site else secrets.token_hex(6)
        key = f"cor_{key_id}_{secrets.token_urlsafe(24)}"
        record = KeyRecord(id=key_id, sha256=_hash(key), role=role, tenant=tenant,
                           jurisdiction=jurisdiction, scope=tuple(scope), name=name,
                           created_at=now.isoformat(), created_by=created_by,
                           expires_at=expires_at.isoformat() if expires_at else None,
                           minimum_marking=minimum_marking)
        self._file.update(lambda records: records.__setitem__(key_id, record))
        return record, key

    def issue(self, role: str, *, tenant: str | None = None, jurisdiction: str | None = None,
              scope: tuple[str, ...] = (), **options: object) -> str:
        """Create a key and return it in plain text (see :meth:`create` for ``options``)."""
        return self.create(role, tenant=tenant, jurisdiction=jurisdiction, scope=scope,
                           **options)[1]  # type: ignore[arg-type]

    def add(self, key: str, role: str, *, tenant: str | None = None, jurisdiction: str | None = None,
            scope: tuple[str, ...] = ()) -> None:
        """Accept an existing key too (the corridor-wide auditor key, issued at one site)."""
        key_id = key.split("_", 2)[1]
        record = KeyRecord(id=key_id, sha256=_hash(key), role=role, tenant=tenant, jurisdiction=jurisdiction,
                           scope=tuple(scope), name="issued at another site",
                           created_at=self.clock().isoformat())
        self._file.update(lambda records: records.__setitem__(key_id, record))

    def authenticate(self, key: str) -> Principal | None:
        """The principal of ``key``, or None when it is unknown, wrong, revoked or expired."""
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != "cor":
            return None
        record = self._file.refresh().get(parts[1])
        if record is None or not hmac.compare_digest(record.sha256, _hash(key)):
            return None
        now = self.clock()
        if record.status(now) != "active":
            return None
        self._note_use(record.id, now)
        return Principal(subject=f"key:{record.id}", role=record.role, tenant=record.tenant,
                         jurisdiction=record.jurisdiction, scope=record.scope,
                         minimum_marking=record.minimum_marking)

    def get(self, key_id: str) -> KeyRecord | None:
        return self._file.refresh().get(key_id)

    def list(self) -> list[KeyRecord]:
        """Every key, oldest first, with its last use as far as this process knows it."""
        records = self._file.refresh().values()
        out = []
        for record in records:
            used = self._used.get(record.id)
            if used is not None and (record.last_used_at is None
                                     or used.isoformat() > record.last_used_at):
                record = replace(record, last_used_at=used.isoformat())
            out.append(record)
        return sorted(out, key=lambda r: (r.created_at or "", r.id))

    def revoke(self, key_id: str, *, by: str | None = None) -> KeyRecord | None:
        """Revoke at once (every worker sees it at its next request); None for an unknown id."""
        now = self.clock().isoformat()

        def change(records: dict[str, KeyRecord]) -> KeyRecord | None:
            record = records.get(key_id)
            if record is None:
                return None
            if record.revoked_at is None:
                record = records[key_id] = replace(record, revoked_at=now, revoked_by=by)
            return record

        return self._file.update(change)

    def _note_use(self, key_id: str, now: dt.datetime) -> None:
        last = self._used.get(key_id)
        self._used[key_id] = now
        if self.path is None:
            return
        if last is not None and (now - last).total_seconds() < self.used_every_s:
            return
        stamp = now.isoformat()

        def change(records: dict[str, KeyRecord]) -> None:
            if key_id in records:
                records[key_id] = replace(records[key_id], last_used_at=stamp)

        try:
            self._file.update(change)
        except OSError:
            pass  # the last use is a convenience; authentication never fails for it


def issuing_site(key: str) -> str | None:
    """The site whose key store issued ``key``, from its id (``cor_de…`` → ``DE``); None if unknown.

    >>> issuing_site("cor_de0a1b2c3d4e_secret")
    'DE'
    """
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "cor":
        return None
    prefix = parts[1][:2].upper()
    return prefix if prefix in JURISDICTIONS else None


class JwtVerifier:
    """Verifies OIDC bearer JWTs against a JWKS file (no network: autarky).

    Roles come from ``roles_claim`` (a list; the first known role wins), the
    tenant from ``tenant_claim``, an operator's jurisdiction from
    ``jurisdiction_claim``, an auditor's scope from ``scope_claim``.
    """

    def __init__(self, jwks_path: Path, *, issuer: str, audience: str,
                 roles_claim: str = "corridor_roles", tenant_claim: str = "corridor_tenant",
                 jurisdiction_claim: str = "corridor_jurisdiction",
                 scope_claim: str = "corridor_audit_scope") -> None:
        import jwt

        self._jwt = jwt
        self._keys = {key.key_id: key for key in jwt.PyJWKSet.from_json(
            Path(jwks_path).read_text("utf-8")).keys}
        self.issuer, self.audience = issuer, audience
        self.claims = ClaimNames(roles_claim, tenant_claim, jurisdiction_claim, scope_claim)

    def authenticate(self, token: str) -> Principal | None:
        """The principal of a valid token whose claims have the right types (see
        :mod:`serving.gateway.claims`), else None."""
        jwt = self._jwt
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(header.get("kid"))
            if key is None:
                return None
            claims = jwt.decode(token, key=key.key, algorithms=[key.algorithm_name or "RS256"],
                                audience=self.audience, issuer=self.issuer,
                                options={"require": ["exp", "iss", "aud", "sub"]})
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        read = read_claims(claims, ROLES, self.claims)
        if read is None:
            return None
        return Principal(subject=f"jwt:{read.sub}", role=read.role, tenant=read.tenant,
                         jurisdiction=read.jurisdiction, scope=tuple(read.audit_scope))


class Authenticator:
    """API keys first, then JWTs (when a verifier is configured)."""

    def __init__(self, keys: KeyStore, jwt: JwtVerifier | None = None) -> None:
        self.keys, self.jwt = keys, jwt

    def authenticate(self, bearer: str) -> Principal | None:
        if bearer.startswith("cor_"):
            return self.keys.authenticate(bearer)
        if self.jwt is not None and bearer.count(".") == 2:
            return self.jwt.authenticate(bearer)
        return None
