"""Autarky mode: serve with no outside connectivity and no vendor updates.

``corridor up --autarky`` (or ``settings.autarky: true`` in the bundle) checks
before anything starts and refuses to start, naming every problem, unless:

- the policy bundle carries a valid detached Ed25519 signature
  (``<bundle>.sig``, :mod:`policies.signing`) by one of the ``operator_keys``
  of the running configuration (:mod:`serving.config`);
- every model to be served has a digest pinned in the bundle, and its
  artifact on disk matches it (:func:`serving.models.artifacts.artifact_digest`);
  workloads of the scheduler and the gateway then carry that digest, so the
  rulebook's ``model-pinned`` rule holds them to it;
- nothing in the configuration points at a non-local endpoint: the Ray
  address, the syslog target, URLs in the replicas' engine arguments, and the
  environment's hub, proxy, telemetry and package-index variables.

It also sets every library's offline switches (:data:`AUTARKY_ENV`) in the
environment, which Ray's nodes, its workers and the vLLM servers inherit,
and keeps an embedded Ray cluster and vLLM on loopback, with a sinkhole proxy
for the HTTP clients of libraries that phone home anyway (:data:`LOOPBACK_ENV`).

*Local* means: a loopback address, a private network address (10/8,
172.16/12, 192.168/16, fc00::/7), ``localhost``, a single-label host name, or
one under ``.local``, ``.internal``, ``.svc``, ``.cluster.local``,
``.home.arpa``, ``.localdomain``. Link-local addresses (169.254/16, where
clouds serve instance metadata) are not local.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from policies import Policy, load_bundle
from policies.exceptions import BundleSignatureError, PolicyError
from policies.signing import OperatorKey, verify_bundle_signers
from serving.replica.actor import OFFLINE_ENV

#: A closed loopback port: whatever is sent there is refused on the spot, and never leaves.
_SINKHOLE = "http://127.0.0.1:9/"

#: Offline and no-telemetry switches of every library Corridor loads (HF hub, transformers,
#: datasets, vLLM usage stats, Ray usage stats and cloud probing, OpenTelemetry, W&B, Gradio).
AUTARKY_ENV: dict[str, str] = {
    **OFFLINE_ENV,
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_PROMPT_ENABLED": "0",
    "OTEL_SDK_DISABLED": "true",
    "WANDB_MODE": "disabled",
    "GRADIO_ANALYTICS_ENABLED": "False",
    # Ray's usage module reports even when disabled ("usage stats are off"); send it nowhere.
    "RAY_USAGE_STATS_REPORT_URL": _SINKHOLE,
}

#: An embedded (single-machine) installation: Ray nodes and vLLM find their address on
#: loopback instead of probing a public address for a route, and every HTTP client that
#: honours the proxy variables (requests, urllib, httpx) sends whatever is not for loopback
#: to the sinkhole; Ray's head probes cloud metadata services (169.254.169.254) with
#: ``requests`` whether its usage stats are on or off.
LOOPBACK_ENV: dict[str, str] = {
    # Ray 2.60 has no public switch for this; with it off, Ray takes the loopback address
    # as the node address instead of asking the routing table for a way to 8.8.8.8.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "VLLM_HOST_IP": "127.0.0.1",
    **{name: _SINKHOLE for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
    **{name: "localhost,127.0.0.1,::1" for name in ("NO_PROXY", "no_proxy")},
}

#: Environment variables that would make some library talk to a host.
ENDPOINT_VARIABLES: tuple[str, ...] = (
    "HF_ENDPOINT", "HF_HUB_ENDPOINT", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy",
    "https_proxy", "all_proxy", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "VLLM_USAGE_STATS_SERVER", "RAY_ADDRESS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
    "WANDB_BASE_URL",
)

_LOCAL_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".svc", ".cluster.local", ".home.arpa",
                   ".localdomain")


class AutarkyError(Exception):
    """Autarky mode refuses to start; ``problems`` lists every reason, each with its fix."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"autarky mode refuses to start ({len(self.problems)} problem(s)):\n{lines}")


def is_local_host(host: str) -> bool:
    """Whether ``host`` is local in the sense of the module docstring.

    >>> [is_local_host(h) for h in ("127.0.0.1", "10.1.2.3", "ray-head", "huggingface.co",
    ...                              "169.254.169.254", "8.8.8.8", "head.ray.svc")]
    [True, True, True, False, False, False, True]
    """
    host = host.strip("[]").rstrip(".").lower()
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host == "localhost" or "." not in host or host.endswith(_LOCAL_SUFFIXES)
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _LOCAL_NETWORKS)


def _host_of(value: str) -> str | None:
    """The host a URL or ``host:port`` names (None for Ray's ``auto``/``local``)."""
    value = value.strip()
    if value in ("", "auto", "local"):
        return None
    parts = urlsplit(value if "://" in value else f"//{value}")
    return parts.hostname or value


def endpoint_problems(*, ray_address: str | None = None, syslog: str | None = None,
                      replica_configs: Iterable[Mapping[str, Any]] = (),
                      environ: Mapping[str, str] | None = None) -> list[str]:
    """Every configured endpoint that is not local, as a sentence with the fix."""
    problems = []
    environ = os.environ if environ is None else environ

    def check(what: str, value: str, fix: str) -> None:
        host = _host_of(value)
        if host is not None and not is_local_host(host):
            problems.append(f"{what} points at {host}, which is not local ({value!r}); {fix}")

    if ray_address:
        check("--ray-address", ray_address, "join a Ray head on the local network")
    if syslog:
        check("security_events.syslog", syslog, "send to a local syslog relay, e.g. udp://127.0.0.1:514")
    for name in ENDPOINT_VARIABLES:
        if environ.get(name):
            check(f"${name}", environ[name], f"unset {name}")
    for config in replica_configs:
        for arg in config.get("engine_args", []):
            if "://" in str(arg):
                check("a replica engine argument", str(arg), "remove it or use a local endpoint")
    return problems


def apply_offline_env(*, loopback: bool) -> dict[str, str]:
    """Set :data:`AUTARKY_ENV` (and :data:`LOOPBACK_ENV` for one machine) in ``os.environ``;
    return what was set. Set before Ray starts, so its nodes and workers inherit it."""
    values = {**AUTARKY_ENV, **(LOOPBACK_ENV if loopback else {})}
    os.environ.update(values)
    if loopback:
        import ray._private.ray_constants as ray_constants

        ray_constants.ENABLE_RAY_CLUSTER = False  # the variable above is read at import time
    return values


@dataclass(frozen=True)
class BundleCheck:
    """A verified bundle: where it is, its digest, and the trusted key that signed it."""

    path: Path
    digest: str
    signer: OperatorKey

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "digest": self.digest, "signer": self.signer.name,
                "signer_jurisdiction": self.signer.jurisdiction, "key_id": self.signer.key_id}


def check_bundle(path: Path, policy: Policy, trusted: Sequence[OperatorKey],
                 jurisdictions: Sequence[str] = ()) -> BundleCheck:
    """Verify ``path``'s signatures and that it is the bundle ``policy`` was built from.

    ``jurisdictions``: a site of the corridor needs a signature of an operator of each (the
    joint bundle both sites load)."""
    if not trusted:
        raise AutarkyError([f"no operator_keys in the running configuration, so no signature of "
                            f"{path} can be trusted; list the signers' public keys "
                            f"(`corridor policy keygen` prints them) in corridor.yaml"])
    try:
        data, signers = verify_bundle_signers(path, trusted)
        signer = signers[0]
        verified = load_bundle(path, text=data.decode("utf-8"))
    except BundleSignatureError as exc:
        raise AutarkyError([f"policy bundle {path}: {exc}"]) from exc
    except (OSError, UnicodeDecodeError, PolicyError) as exc:
        raise AutarkyError([f"policy bundle {path}: cannot be read and verified ({exc})"]) from exc
    missing = sorted(set(jurisdictions) - {s.jurisdiction for s in signers})
    if missing:
        raise AutarkyError([f"policy bundle {path}: the joint bundle of the corridor needs a signature "
                            f"of an operator of {', '.join(missing)} too (`corridor policy sign` on each "
                            f"side)"])
    if verified.digest() != policy.digest:
        raise AutarkyError([f"policy bundle {path} changed after it was loaded (digest "
                            f"{verified.digest()}, loaded {policy.digest}); start again"])
    return BundleCheck(Path(path), policy.digest, signer)


def model_problems(policy: Policy, digests: Mapping[str, str]) -> list[str]:
    """Each served model (``digests``: model id → its artifact's digest) not pinned or not matching."""
    problems = []
    for model_id, digest in sorted(digests.items()):
        model = policy.models.get(model_id)
        if model is None:
            continue
        if model.digest is None:
            problems.append(f"model {model_id} has no pinned digest in the bundle; pin "
                            f"digest: {digest} (`corridor policy pin`) and sign the bundle again")
        elif model.digest != digest:
            problems.append(f"model {model_id}: artifact digest {digest} does not match the pinned "
                            f"{model.digest}; restore the pinned artifact or pin the new one")
    return problems


@dataclass
class AutarkyReport:
    """What autarky mode checked at start; written into the ``policy`` ledger entry."""

    bundle: BundleCheck
    pinned: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.bundle.to_json(), "pinned": dict(self.pinned),
                "offline_switches": sorted(self.env)}


def local_model_directories(home: Path, bundle: Any = None) -> dict[str, Path]:
    """Where ``corridor up`` finds the models it serves, for those present on this machine: each
    model's artifact as the bundle (default: the shipped one) says (:mod:`serving.models.catalog`),
    demo builds under ``$CORRIDOR_MODELS`` (default ``<home>/models``)."""
    from policies import default_bundle_path
    from serving.models.catalog import ArtifactError, ModelCatalog

    bundle = bundle or load_bundle(default_bundle_path())
    catalog = ModelCatalog(Path(os.environ.get("CORRIDOR_MODELS") or Path(home) / "models"))
    found: dict[str, Path] = {}
    for model in bundle.models:
        try:
            directory = catalog.directory(model)
        except ArtifactError:
            continue
        if directory.is_dir():
            found[model.id] = directory
    return found
