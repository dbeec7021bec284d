"""Who is calling: API keys (stored only as hashes) and optional OIDC bearer JWTs.

An API key reads ``cor_<key id>_<secret>``. The key store keeps, per key id,
the SHA-256 of the whole key and who it belongs to; the presented key's hash
is compared with :func:`hmac.compare_digest`. Plain keys exist only at issue
time (and in ``demo-keys.json`` written by ``corridor up`` for the demo).

Roles: ``app`` (inference for its tenant), ``admin`` (batches and deployments
of its tenant), ``operator`` (belongs to a jurisdiction, not a tenant),
``auditor`` (read-only audit, scoped to tenants or ``*`` for all).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from policies.bundle import JURISDICTIONS
from serving.gateway.claims import ClaimNames, read_claims

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

    @property
    def audit_scope(self) -> tuple[str, ...] | None:
        """Tenants an auditor may read; None means all."""
        return None if ALL_TENANTS in self.scope else self.scope


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class KeyStore:
    """API keys by key id, hashes only, persisted as JSON (mode 0600) when given a path.

    At a site of the corridor (``site``), key ids start with the site's code in lower case
    (``cor_fr…``), so a key presented at the other site is recognised as the other site's
    (:func:`issuing_site`) and the caller is told where to send it.
    """

    def __init__(self, path: Path | None = None, *, site: str | None = None) -> None:
        self.path = path
        self.site = site
        self._records: dict[str, dict[str, Any]] = {}
        if path is not None and path.exists():
            self._records = json.loads(path.read_text("utf-8"))

    def issue(self, role: str, *, tenant: str | None = None, jurisdiction: str | None = None,
              scope: tuple[str, ...] = ()) -> str:
        """Create a key and return it in plain text (the only time it exists in plain)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if role in ("app", "admin") and not tenant:
            raise ValueError(f"role {role!r} needs a tenant")
        if role == "operator" and jurisdiction not in JURISDICTIONS:
            raise ValueError("role 'operator' needs jurisdiction FR or DE")
        key_id = (self.site.lower() + secrets.token_hex(5)) if self.site else secrets.token_hex(6)
        key = f"cor_{key_id}_{secrets.token_urlsafe(24)}"
        self.add(key, role, tenant=tenant, jurisdiction=jurisdiction, scope=scope)
        return key

    def add(self, key: str, role: str, *, tenant: str | None = None, jurisdiction: str | None = None,
            scope: tuple[str, ...] = ()) -> None:
        """Accept an existing key too (e.g. the corridor-wide auditor key, issued at one site)."""
        key_id = key.split("_", 2)[1]
        self._records[key_id] = {"sha256": _hash(key), "role": role, "tenant": tenant,
                                 "jurisdiction": jurisdiction, "scope": list(scope)}
        self._save()

    def authenticate(self, key: str) -> Principal | None:
        """The principal of ``key``, or None when it is unknown or wrong."""
        parts = key.split("_", 2)
        if len(parts) != 3 or parts[0] != "cor":
            return None
        record = self._records.get(parts[1])
        if record is None or not hmac.compare_digest(record["sha256"], _hash(key)):
            return None
        return Principal(subject=f"key:{parts[1]}", role=record["role"], tenant=record["tenant"],
                         jurisdiction=record["jurisdiction"], scope=tuple(record["scope"]))

    def _save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self._records, handle, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


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
