"""The claims of an OIDC token, read strictly: a claim of the wrong type authenticates nobody.

A JWT's signature says who issued it, not that its claims have the shapes Corridor
expects: an audit scope sent as the string ``"fr-*x"`` must not become the
characters ``f, r, -, *, x`` (``*`` is the global scope), a tenant sent as a list
must not reach the rulebook. :func:`read_claims` validates the claims Corridor
reads, under the claim names the installation configured, in strict mode (no
coercion), and returns None for anything else, which the gateway answers 401.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError



@dataclass(frozen=True, slots=True)
class ClaimNames:
    """Which token claims carry Corridor's roles, tenant, jurisdiction and audit scope."""

    roles: str = "corridor_roles"
    tenant: str = "corridor_tenant"
    jurisdiction: str = "corridor_jurisdiction"
    audit_scope: str = "corridor_audit_scope"


class CorridorClaims(BaseModel):
    """The claims Corridor reads, by their meaning (the names are :class:`ClaimNames`)."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    sub: str = Field(min_length=1, max_length=256, description="The token's subject.")
    roles: list[str] = Field(max_length=16, description="Roles; the first known one applies.")
    tenant: str | None = Field(default=None, min_length=1, max_length=128,
                               pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                               description="The tenant of an app or admin.")
    jurisdiction: Literal["FR", "DE"] | None = Field(default=None,
                                                     description="An operator's jurisdiction.")
    audit_scope: list[str] = Field(default_factory=list, max_length=256,
                                   description="An auditor's tenants, or ['*'] for all.")
    role: str = Field(default="", description="The role that applies (set by read_claims).")


def read_claims(claims: Mapping[str, Any], known_roles: Collection[str],
                names: ClaimNames = ClaimNames()) -> CorridorClaims | None:
    """The verified ``claims`` as Corridor reads them, with ``role`` the first known role; None
    when a claim has the wrong type or the role lacks what it acts for (a tenant for app and
    admin, a jurisdiction for an operator, a scope for an auditor).

    >>> read_claims({"sub": "a", "corridor_roles": ["auditor"], "corridor_audit_scope": "fr-*x"},
    ...             ["auditor"]) is None
    True
    >>> read_claims({"sub": "a", "corridor_roles": ["x", "app"], "corridor_tenant": "fr-interior"},
    ...             ["app"]).role
    'app'
    """
    picked = {"sub": claims.get("sub"), "roles": claims.get(names.roles, [])}
    for key, name in (("tenant", names.tenant), ("jurisdiction", names.jurisdiction),
                      ("audit_scope", names.audit_scope)):
        if claims.get(name) is not None:
            picked[key] = claims[name]
    try:
        parsed = CorridorClaims.model_validate(picked)
    except ValidationError:
        return None
    if any(not scope or len(scope) > 128 for scope in parsed.audit_scope):
        return None
    role = next((r for r in parsed.roles if r in known_roles), None)
    needs = {"app": parsed.tenant, "admin": parsed.tenant, "operator": parsed.jurisdiction,
             "auditor": parsed.audit_scope or None}
    if role is None or (role in needs and needs[role] is None):
        return None
    return parsed.model_copy(update={"role": role})
