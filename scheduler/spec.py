"""What a deployment asks for: a model, the audiences it serves, replicas and their resources.

Stability: public. Both classes are frozen, compare by value and check their
input in the constructor; a bad value raises :class:`~scheduler.exceptions.SpecError`
whose message shows a correct example.

>>> spec = DeploymentSpec("interior-chat", "corridor-tiny", [Audience("fr-interior", "DR")], replicas=2)
>>> spec
DeploymentSpec('interior-chat', model='corridor-tiny', audiences=[fr-interior/DR], replicas=2, gpus_per_replica=1)
>>> [w.summary()["marking"] for w in spec.workloads()]
['DR']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from policies import Marking, PolicyError, Workload, parse_data_flags, parse_marking
from policies.bundle import JURISDICTIONS

from scheduler.exceptions import SpecError

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_EXAMPLE = ("DeploymentSpec('interior-chat', 'corridor-tiny', [Audience('fr-interior', 'DR')], "
            "replicas=2, tensor_parallel_size=1)")


@dataclass(frozen=True, slots=True)
class Audience:
    """Whose data a replica serves: one tenant, one marking, extra data flags.

    ``marking`` takes any spelling the rulebook knows (``"Diffusion Restreinte"``
    is ``DR``); ``data_flags`` a list or a comma-separated string.

    >>> Audience("fr-health", "PUBLIC", "health")
    Audience('fr-health', 'PUBLIC', data_flags=('health',))
    >>> str(Audience("fr-health", "PUBLIC", ["personal", "health"]))
    'fr-health/PUBLIC+health,personal'
    """

    tenant: str
    marking: Marking
    data_flags: frozenset[str] = frozenset()

    def __init__(self, tenant: str, marking: str | Marking,
                 data_flags: str | Iterable[str] | None = None) -> None:
        if not isinstance(tenant, str) or not tenant:
            raise SpecError(f"audience tenant: got {tenant!r}, want a tenant id, "
                            f"e.g. Audience('fr-interior', 'DR')")
        try:
            parsed = marking if isinstance(marking, Marking) else parse_marking(marking)
            flags = parse_data_flags(data_flags)
        except PolicyError as exc:
            raise SpecError(f"audience {tenant}: {exc}; e.g. Audience('fr-health', 'PUBLIC', "
                            f"data_flags=['health'])") from exc
        object.__setattr__(self, "tenant", tenant)
        object.__setattr__(self, "marking", parsed)
        object.__setattr__(self, "data_flags", flags)

    def __repr__(self) -> str:
        flags = f", data_flags={tuple(sorted(self.data_flags))!r}" if self.data_flags else ""
        return f"Audience({self.tenant!r}, {self.marking.id!r}{flags})"

    def __str__(self) -> str:
        flags = f"+{','.join(sorted(self.data_flags))}" if self.data_flags else ""
        return f"{self.tenant}/{self.marking.id}{flags}"


def _audiences(value: Any) -> tuple[Audience, ...]:
    if isinstance(value, (str, Audience)) or not isinstance(value, Iterable):
        value = [value]
    out = []
    for item in value:
        if isinstance(item, Audience):
            out.append(item)
        elif isinstance(item, tuple) and 2 <= len(item) <= 3:
            out.append(Audience(*item))
        else:
            raise SpecError(f"audiences: got {item!r}, want Audience objects or (tenant, marking[, "
                            f"data_flags]) tuples; e.g. {_EXAMPLE}")
    if not out:
        raise SpecError(f"audiences: got none, want at least one; e.g. {_EXAMPLE}")
    if len(set(out)) != len(out):
        raise SpecError(f"audiences: got duplicates in {[str(a) for a in out]}; list each once")
    return tuple(out)


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{name}: got {value!r}, want an integer >= {minimum}; e.g. {_EXAMPLE}")
    return value


@dataclass(frozen=True, slots=True)
class DeploymentSpec:
    """A request to run ``replicas`` replicas of ``model``, each shared by every audience.

    A replica is placed only on a pool the rulebook allows for *every*
    audience. ``gpus_per_replica`` defaults to ``tensor_parallel_size``; with
    tensor parallelism each GPU is one placement-group bundle, so the two must
    be equal. ``pool`` / ``jurisdiction`` narrow where replicas may go; the
    rulebook still decides. ``replica_config`` is handed unchanged to the
    replica actor's constructor (e.g. vLLM arguments); it takes no part in
    placement.
    """

    name: str
    model: str
    audiences: tuple[Audience, ...]
    replicas: int = 1
    tensor_parallel_size: int = 1
    gpus_per_replica: int = 0
    cpus_per_replica: float = 0.0
    pool: str | None = None
    jurisdiction: str | None = None
    model_digest: str | None = None
    replica_config: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __init__(
        self,
        name: str,
        model: str,
        audiences: Iterable[Audience | tuple] | Audience,
        *,
        replicas: int = 1,
        tensor_parallel_size: int = 1,
        gpus_per_replica: int | None = None,
        cpus_per_replica: float = 0.0,
        pool: str | None = None,
        jurisdiction: str | None = None,
        model_digest: str | None = None,
        replica_config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise SpecError(f"name: got {name!r}, want lowercase letters, digits, '.', '_' or '-' "
                            f"(at most 64), e.g. 'interior-chat'")
        if not isinstance(model, str) or not model:
            raise SpecError(f"model: got {model!r}, want a model id of the bundle, e.g. 'corridor-tiny'")
        tp = _count("tensor_parallel_size", tensor_parallel_size, 1)
        gpus = tp if gpus_per_replica is None else _count("gpus_per_replica", gpus_per_replica, 1)
        if tp > 1 and gpus != tp:
            raise SpecError(f"gpus_per_replica: got {gpus} with tensor_parallel_size={tp}, want "
                            f"{tp} (one GPU per tensor-parallel rank), e.g. tensor_parallel_size=2, "
                            f"gpus_per_replica=2")
        if (isinstance(cpus_per_replica, bool) or not isinstance(cpus_per_replica, (int, float))
                or cpus_per_replica < 0):
            raise SpecError(f"cpus_per_replica: got {cpus_per_replica!r}, want a number >= 0, e.g. 0.5")
        if pool is not None and (not isinstance(pool, str) or not _NAME.match(pool)):
            raise SpecError(f"pool: got {pool!r}, want a pool id of the bundle, e.g. 'fr-paris'")
        if jurisdiction is not None and jurisdiction not in JURISDICTIONS:
            raise SpecError(f"jurisdiction: got {jurisdiction!r}, want 'FR' or 'DE'")
        if model_digest is not None and not (isinstance(model_digest, str) and model_digest):
            raise SpecError(f"model_digest: got {model_digest!r}, want 'sha256:<64 hex>' or None")
        if replica_config is not None and not isinstance(replica_config, Mapping):
            raise SpecError(f"replica_config: got {type(replica_config).__name__}, want a mapping, "
                            f"e.g. {{'max_model_len': 512}}")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "audiences", _audiences(audiences))
        object.__setattr__(self, "replicas", _count("replicas", replicas, 0))
        object.__setattr__(self, "tensor_parallel_size", tp)
        object.__setattr__(self, "gpus_per_replica", gpus)
        object.__setattr__(self, "cpus_per_replica", float(cpus_per_replica))
        object.__setattr__(self, "pool", pool)
        object.__setattr__(self, "jurisdiction", jurisdiction)
        object.__setattr__(self, "model_digest", model_digest)
        object.__setattr__(self, "replica_config", MappingProxyType(dict(replica_config or {})))

    def with_replicas(self, replicas: int) -> DeploymentSpec:
        """The same request with another replica count (what ``scale`` records)."""
        return DeploymentSpec(
            self.name, self.model, self.audiences, replicas=replicas,
            tensor_parallel_size=self.tensor_parallel_size, gpus_per_replica=self.gpus_per_replica,
            cpus_per_replica=self.cpus_per_replica, pool=self.pool, jurisdiction=self.jurisdiction,
            model_digest=self.model_digest, replica_config=self.replica_config)

    def workloads(self) -> tuple[Workload, ...]:
        """One rulebook workload per audience, in audience order (kind ``replica``)."""
        return tuple(
            Workload.create(a.tenant, a.marking, kind="replica", data_flags=a.data_flags,
                            model=self.model, model_digest=self.model_digest,
                            gpus=self.gpus_per_replica, id=f"{self.name}/{a}")
            for a in self.audiences)

    def __repr__(self) -> str:
        parts = [repr(self.name), f"model={self.model!r}",
                 f"audiences=[{', '.join(str(a) for a in self.audiences)}]",
                 f"replicas={self.replicas}", f"gpus_per_replica={self.gpus_per_replica}"]
        if self.tensor_parallel_size > 1:
            parts.append(f"tensor_parallel_size={self.tensor_parallel_size}")
        if self.cpus_per_replica:
            parts.append(f"cpus_per_replica={self.cpus_per_replica:g}")
        for key in ("pool", "jurisdiction", "model_digest"):
            if getattr(self, key) is not None:
                parts.append(f"{key}={getattr(self, key)!r}")
        return f"DeploymentSpec({', '.join(parts)})"
