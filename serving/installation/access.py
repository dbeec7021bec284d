"""How ``corridor up`` configures access to its gateway from ``corridor.yaml``: credentials
(API keys, and OIDC tokens when configured), client addresses behind trusted proxies,
who reads ``/metrics``, the tenants' token budgets and their prefix-cache salts, and how long
requests wait for a replica (the admission queue)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from policies import Policy
from serving.config import ConfigError, RunConfig
from serving.gateway.auth import JwtVerifier
from serving.gateway.clients import ClientAddresses, parse_networks
from serving.gateway.token_quota import TokenQuota
from serving.routing.cache_salt import open_cache_salts


def jwt_verifier(config: RunConfig, home: Path) -> JwtVerifier | None:
    """The OIDC token verifier ``oidc`` configures, or None; a JWKS file that cannot be read
    fails here (call it before starting anything) with the fix."""
    oidc = config.oidc
    if oidc is None:
        return None
    path = oidc.jwks_path(home)
    try:
        verifier = JwtVerifier(path, issuer=oidc.issuer, audience=oidc.audience,
                               roles_claim=oidc.claims.roles, tenant_claim=oidc.claims.tenant,
                               jurisdiction_claim=oidc.claims.jurisdiction,
                               scope_claim=oidc.claims.audit_scope)
    except (OSError, ValueError) as exc:  # PyJWT's errors about the key set are ValueErrors too
        raise ConfigError(f"oidc.jwks_file: cannot read the identity provider's keys from {path} "
                          f"({exc}); export its JWKS there, e.g. from "
                          f"{oidc.issuer.rstrip('/')}/.well-known/jwks.json") from exc
    except Exception as exc:  # noqa: BLE001 - PyJWT raises its own types for a malformed set
        raise ConfigError(f"oidc.jwks_file: {path} is not a JWKS document ({exc})") from exc
    return verifier


def gateway_options(config: RunConfig, home: Path, policy: Policy,
                    limits: Mapping[str, Any] | None = None, *,
                    database: str | None = None) -> dict[str, Any]:
    """The :class:`~serving.gateway.Gateway` fields ``corridor.yaml`` and ``$CORRIDOR_HOME`` set;
    ``limits``: the token quota's options (its shared buckets, with several gateway processes);
    ``database``: the site's, which then holds the cache-salt secret every process shares."""
    return {"clients": ClientAddresses(parse_networks(config.trusted_proxies)),
            "metrics_roles": None if config.metrics.public else ("operator", "auditor"),
            "tokens": TokenQuota(policy, **(limits or {})),
            "cache_salts": open_cache_salts(home, database),
            "queue": config.queue}
