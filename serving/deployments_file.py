"""The declarative deployments file, and the shape of one deployment on the operator API.

A YAML file validated as strictly as a policy bundle: an unknown field, a wrong
type, a duplicate key, an unknown model, tenant, pool or marking is an error
naming the file, the path inside it and the problem::

    deployments.yaml: deployments[0].audiences[1].tenant: unknown tenant 'fr-interiour'; known: …

The same :class:`DeploymentDecl` is the body of ``POST /admin/deployments``::

    deployments:
      - name: interior-small              # lowercase letters, digits, '.', '_', '-'
        model: corridor-small             # a model of the bundle, with its artifact
        audiences:                        # whose data it serves; a replica goes only where
          - {tenant: fr-interior, marking: DR}        # the rulebook allows every audience
          - {tenant: fr-interior, marking: PUBLIC, data_flags: [personal]}
        replicas: 2                       # or {min: 1, max: 3, target_outstanding: 4}
        tensor_parallel_size: 1
        jurisdiction: FR                  # optional hints; the rulebook still decides
        pool: fr-paris
        engine_args: {max_model_len: 512} # passed to vLLM: --max-model-len 512

``replicas: {min, max}`` scales between the two on requests per replica — outstanding on its
replicas plus queued for its model (:mod:`serving.autoscale`); ``corridor deploy scale`` fixes
the count again.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, JsonValue, Tag, model_validator

from policies import BundleError, BundleIssue, Policy, UnknownMarkingError, parse_marking
from policies.bundle import DataFlag, Jurisdiction
from policies.loading import load_yaml_model
from scheduler.spec import Audience, DeploymentSpec
from serving.models.catalog import engine_arguments

Name = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AudienceDecl(_Strict):
    """Whose data the replicas serve: a tenant, a marking, extra data flags."""

    tenant: Id = Field(description="A tenant of the bundle.")
    marking: str = Field(description="Any spelling the rulebook knows, e.g. DR or VS-NfD.")
    data_flags: list[DataFlag] = Field(default_factory=list, description="health, personal, sensitive.")


class Autoscale(_Strict):
    """Between ``min`` and ``max`` replicas, on requests (outstanding and queued) per replica."""

    min: int = Field(ge=1, description="At least one: a deployment at 0 has no load to measure.")
    max: int = Field(ge=1)
    target_outstanding: float = Field(default=4.0, gt=0,
                                      description="Requests per replica to aim for: outstanding on the "
                                                  "replicas plus queued for the model.")

    @model_validator(mode="after")
    def _ordered(self) -> Autoscale:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min}), e.g. {{min: 1, max: 3}}")
        return self


#: A count, or {min, max}; the tags keep pydantic from reporting both alternatives.
Replicas = Annotated[Union[Annotated[int, Tag("<count>")], Annotated[Autoscale, Tag("<range>")]],
                     Discriminator(lambda v: "<range>" if isinstance(v, (dict, Autoscale)) else "<count>")]


def untagged(path: str) -> str:
    """A validation path without the union tags of ``replicas``.

    >>> untagged("deployments[1].replicas.<range>.max")
    'deployments[1].replicas.max'
    """
    return path.replace(".<count>", "").replace(".<range>", "")


class DeploymentDecl(_Strict):
    """One deployment as declared (the file's entries, the API's body)."""

    name: Name
    model: Id = Field(description="A model of the bundle.")
    audiences: list[AudienceDecl] = Field(min_length=1)
    replicas: Replicas = Field(default=1, description="A count (>= 0) or {min, max}.")
    tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    pool: Id | None = Field(default=None, description="Only this pool (the rulebook still decides).")
    jurisdiction: Jurisdiction | None = Field(default=None, description="Only pools of FR or DE.")
    engine_args: dict[str, JsonValue] = Field(default_factory=dict,
                                              description="vLLM server arguments, passed through.")

    @model_validator(mode="after")
    def _checked(self) -> DeploymentDecl:
        if isinstance(self.replicas, int) and self.replicas < 0:
            raise ValueError(f"replicas: got {self.replicas}, want a count >= 0 or {{min, max}}")
        engine_arguments(self.engine_args)  # a reserved or malformed name is a ValueError
        pairs = [(a.tenant, parse_marking(a.marking).id if _known(a.marking) else a.marking,
                  tuple(sorted(a.data_flags))) for a in self.audiences]
        if len(set(pairs)) != len(pairs):
            raise ValueError("audiences: an audience is listed twice; list each once")
        return self

    @property
    def initial_replicas(self) -> int:
        """Replicas to start with: the count, or ``min``."""
        return self.replicas if isinstance(self.replicas, int) else self.replicas.min

    @property
    def most_replicas(self) -> int:
        return self.replicas if isinstance(self.replicas, int) else self.replicas.max

    def gpus(self) -> int:
        """The most GPUs it may hold (what a tenant's ``max_gpus`` quota counts)."""
        return self.most_replicas * self.tensor_parallel_size

    def runtime(self) -> dict[str, Any]:
        """What a running replica depends on: a change here needs a rolling update."""
        return self.model_dump(mode="json", exclude={"replicas"})

    def to_spec(self, replicas: int, replica_config: dict[str, Any],
                model_digest: str | None) -> DeploymentSpec:
        """The scheduler's spec with ``replicas`` replicas and the replica actor's config."""
        return DeploymentSpec(
            self.name, self.model,
            [Audience(a.tenant, a.marking, a.data_flags) for a in self.audiences],
            replicas=replicas, tensor_parallel_size=self.tensor_parallel_size, pool=self.pool,
            jurisdiction=self.jurisdiction, model_digest=model_digest, replica_config=replica_config)


class DeploymentsFile(_Strict):
    """A whole deployments file."""

    deployments: list[DeploymentDecl] = Field(default_factory=list)


class DeploymentsFileError(BundleError):
    """A deployments file (or API body) that cannot be used; ``issues`` lists every problem."""

    def __init__(self, issues: list[BundleIssue]) -> None:
        super().__init__(issues)
        lines = "\n".join(f"  {issue}" for issue in issues)
        self.args = (f"invalid deployments ({len(issues)} problem(s)):\n{lines}",)


def _known(marking: str) -> bool:
    try:
        parse_marking(marking)
    except UnknownMarkingError:
        return False
    return True


def default_deployments_path() -> Path:
    """The demo set ``corridor up`` deploys unless given ``--deployments``."""
    return Path(__file__).parent / "installation" / "deployments.yaml"


def load_deployments(path: str | Path, policy: Policy | None = None, *,
                     text: str | None = None) -> DeploymentsFile:
    """Load and validate a deployments file (against ``policy``'s names when given);
    raises :class:`DeploymentsFileError` listing every problem."""
    try:
        loaded = load_yaml_model(path, DeploymentsFile, text=text)
    except DeploymentsFileError:
        raise
    except BundleError as exc:
        raise DeploymentsFileError([BundleIssue(i.file, untagged(i.path), i.message)
                                    for i in exc.issues]) from exc
    issues = check_names(loaded.deployments, policy, str(path)) if policy is not None else []
    counts = Counter(d.name for d in loaded.deployments)
    issues += [BundleIssue(str(path), f"deployments[{i}].name", f"duplicate name {d.name!r}")
               for i, d in enumerate(loaded.deployments) if counts[d.name] > 1]
    if issues:
        raise DeploymentsFileError(issues)
    return loaded


def check_names(decls: list[DeploymentDecl], policy: Policy, file: str,
                prefix: str = "deployments") -> list[BundleIssue]:
    """Every name in ``decls`` the policy does not know: models, tenants, markings, pools."""
    issues: list[BundleIssue] = []
    models, tenants, pools = policy.models, policy.tenants, policy.pools

    def issue(path: str, message: str) -> None:
        issues.append(BundleIssue(file, path, message))

    for index, decl in enumerate(decls):
        path = f"{prefix}[{index}]" if prefix else ""
        at = f"{path}." if path else ""
        if decl.model not in models:
            issue(f"{at}model", f"unknown model {decl.model!r}; known: {', '.join(sorted(models))}")
        for a, audience in enumerate(decl.audiences):
            if audience.tenant not in tenants:
                issue(f"{at}audiences[{a}].tenant",
                      f"unknown tenant {audience.tenant!r}; known: {', '.join(sorted(tenants))}")
            try:
                parse_marking(audience.marking)
            except UnknownMarkingError as exc:
                issue(f"{at}audiences[{a}].marking", str(exc))
        if decl.pool is not None:
            pool = pools.get(decl.pool)
            if pool is None:
                issue(f"{at}pool", f"unknown pool {decl.pool!r}; known: {', '.join(sorted(pools))}")
            elif decl.jurisdiction is not None and pool.jurisdiction != decl.jurisdiction:
                issue(f"{at}pool", f"pool {decl.pool} is in {pool.jurisdiction}, not in the "
                      f"jurisdiction {decl.jurisdiction} this deployment names")
    return issues
