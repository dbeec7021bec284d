"""The running configuration: whom an installation trusts and where it reports, beside the bundle.

Read from ``$CORRIDOR_HOME/corridor.yaml`` when present (or the file given to
``corridor up --config``), validated as strictly as a policy bundle: an
unknown field or a wrong type is an error naming the file and the path::

    operator_keys:                 # may sign policy bundles (required in autarky mode)
      - {name: fr-ops, jurisdiction: FR, public_key: <base64 raw key>}
    security_events:
      file: security-events.jsonl  # relative to $CORRIDOR_HOME
      syslog: udp://127.0.0.1:5514 # optional RFC 5424 target, udp:// or tcp://
    auth_throttle:
      failures: 10                 # failed authentications from one source …
      window_s: 60                 # … within this window: its failures answered 429, reported
    trusted_proxies: [10.0.0.0/8]  # X-Forwarded-For is believed only from these peers
    metrics:
      public: false                # /metrics for operator and auditor keys only (default)
    database: postgresql://corridor@db.fr.internal/corridor   # optional: shared state (see below)
    oidc:                          # optional: OIDC bearer tokens beside API keys
      issuer: https://idp.example.gouv.fr
      audience: corridor
      jwks_file: oidc-jwks.json    # the IdP's keys, relative to $CORRIDOR_HOME (no network)
      claims: {roles: corridor_roles, tenant: corridor_tenant,
               jurisdiction: corridor_jurisdiction, audit_scope: corridor_audit_scope}
    routing: {weights: {prefix: 3, tokens: 1, queue: 1, kv_cache: 1}}  # see serving.routing.settings
    queue: {replica_concurrency: 256, timeout_s: 30}
    on_demand: {idle_release_s: 300, wait_s: 180}
    batch: {bulk_lines: 1}         # >1: chat lines go to the replica in bulk (usage per group)

``database`` moves the site's state (ledger, keys, batches, declarations, bundles, limits) into
PostgreSQL, so several gateway processes can serve the site (``corridor up --gateway-workers N``;
``--database`` overrides it; see ``docs/database.md``).

Every field has a default, so no file means: no trusted keys, the feed in
``security-events.jsonl``, no syslog, no trusted proxy, metrics for operators
and auditors, API keys only.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from policies.exceptions import BundleError
from policies.loading import load_yaml_model
from policies.signing import OperatorKey
from serving.routing.settings import OnDemandSettings, QueueSettings, RoutingSettings

CONFIG_FILENAME = "corridor.yaml"


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message lists every problem."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecurityEventsConfig(_Strict):
    """Where the security event feed goes."""

    file: str = Field(default="security-events.jsonl",
                      description="JSON-lines file, relative to $CORRIDOR_HOME unless absolute.")
    syslog: str | None = Field(default=None, description="RFC 5424 target, e.g. udp://127.0.0.1:514.")

    @field_validator("syslog")
    @classmethod
    def _syslog_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("udp", "tcp") or not parts.hostname or parts.port is None:
            raise ValueError(f"got {value!r}, want udp://HOST:PORT or tcp://HOST:PORT, "
                             f"e.g. udp://127.0.0.1:514")
        return value


class AuthThrottleConfig(_Strict):
    """When repeated authentication failures from one source are throttled."""

    failures: int = Field(default=10, ge=1)
    window_s: float = Field(default=60.0, gt=0)


class MetricsConfig(_Strict):
    """Who may read ``/metrics`` (it names tenants and their request counts)."""

    public: bool = Field(default=False, description="True: no credentials needed; expose the "
                         "gateway's port only to the monitoring network then.")


class BatchConfig(_Strict):
    """How the batch executor talks to replicas."""

    bulk_lines: int = Field(default=1, ge=1, le=1024, description=(
        "Chat lines of a batch sent to a replica in one bulk request at most. 1 (default): one "
        "request per line, each answer an exact chat completion with its own usage. More: vLLM's "
        "/v1/chat/completions/batch, a line's usage is null (vLLM counts prompt tokens per group) "
        "and its completion tokens are in corridor_usage; the batch's usage stays exact."))


class OidcClaimsConfig(_Strict):
    """Which token claims carry Corridor's roles, tenant, jurisdiction and audit scope."""

    roles: str = Field(default="corridor_roles", min_length=1)
    tenant: str = Field(default="corridor_tenant", min_length=1)
    jurisdiction: str = Field(default="corridor_jurisdiction", min_length=1)
    audit_scope: str = Field(default="corridor_audit_scope", min_length=1)


class OidcConfig(_Strict):
    """OIDC bearer tokens, verified offline against the identity provider's JWKS file."""

    issuer: str = Field(min_length=1, description="The tokens' ``iss``, exactly.")
    audience: str = Field(min_length=1, description="The ``aud`` the tokens must name.")
    jwks_file: str = Field(min_length=1, description="JWKS file, relative to $CORRIDOR_HOME "
                           "unless absolute.")
    claims: OidcClaimsConfig = Field(default_factory=OidcClaimsConfig)

    def jwks_path(self, home: Path) -> Path:
        path = Path(self.jwks_file)
        return path if path.is_absolute() else Path(home) / path


class RunConfig(_Strict):
    """The whole running configuration (see the module docstring)."""

    operator_keys: list[OperatorKey] = Field(default_factory=list)
    security_events: SecurityEventsConfig = Field(default_factory=SecurityEventsConfig)
    auth_throttle: AuthThrottleConfig = Field(default_factory=AuthThrottleConfig)
    trusted_proxies: list[str] = Field(default_factory=list, description="Peers whose "
                                       "X-Forwarded-For is believed: addresses or CIDR blocks.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    oidc: OidcConfig | None = None
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    on_demand: OnDemandSettings = Field(default_factory=OnDemandSettings)
    batch: BatchConfig = Field(default_factory=BatchConfig)
    database: str | None = Field(default=None, description="The site's PostgreSQL database, "
                                 "postgresql://USER@HOST:PORT/NAME; None: SQLite and files in $CORRIDOR_HOME.")

    @field_validator("database")
    @classmethod
    def _database(cls, value: str | None) -> str | None:
        from scheduler.database import check_url

        return None if value is None else check_url(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=False)
            except ValueError:
                raise ValueError(f"got {value!r}, want an address or CIDR block, e.g. 10.0.0.0/8") from None
        return values

    def events_path(self, home: Path) -> Path:
        path = Path(self.security_events.file)
        return path if path.is_absolute() else Path(home) / path


def load_run_config(path: str | Path | None, home: str | Path) -> RunConfig:
    """``path``, else ``home/corridor.yaml`` if it exists, else the defaults."""
    if path is None:
        candidate = Path(home) / CONFIG_FILENAME
        if not candidate.exists():
            return RunConfig()
        path = candidate
    try:
        return load_yaml_model(path, RunConfig)
    except BundleError as exc:
        lines = "\n".join(f"  {issue}" for issue in exc.issues)
        raise ConfigError(f"invalid configuration ({len(exc.issues)} problem(s)):\n{lines}") from exc
