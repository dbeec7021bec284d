"""The policy bundle: pools, tenants, models, requirement rules, equivalences, declarations.

A bundle is data (YAML); this module defines its schema and checks it on load.
Every model forbids unknown fields, and values are validated strictly, so a
misspelled ``residency`` or a quoted number is an error, never a silent
default. Errors name the file, the path inside it and what is wrong::

    policies/bundles/default.yaml: tenants[1].residency: unknown field ...

Cross-references (a tenant naming a model that does not exist, an unknown
marking, a declaration window longer than allowed) are checked after the
schema, with the same kind of error.

One module because it is one schema: the bundle's models and the cross-section
checks that read all of them.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_serializer, model_validator

from policies.canonical import canonical_json, sha256_hex
from policies.exceptions import BundleError, BundleIssue, UnknownMarkingError
from policies.loading import load_yaml_model
from policies.markings import Scheme, parse_marking

Jurisdiction = Literal["FR", "DE"]
DataFlag = Literal["health", "personal", "sensitive"]
Direction = Literal["FR->DE", "DE->FR"]

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
    on_demand: bool = Field(
        default=False,
        description="Place a replica when a request finds none live in an allowed pool (the "
        "request waits for it); release it once idle.",
    )

    @model_serializer(mode="wrap")
    def _omit_unset_on_demand(self, handler):  # type: ignore[no-untyped-def]
        return _without_defaults(handler(self), on_demand=False)


class Condition(_Strict):
    """When a requirement applies: a marking, or a data flag (exactly one)."""

    marking: str | None = None
    data_flag: DataFlag | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Condition:
        if (self.marking is None) == (self.data_flag is None):
            raise ValueError("give exactly one of 'marking' or 'data_flag', e.g. {marking: DR}")
        return self


class Requirement(_Strict):
    """A requirement rule: data matching ``when`` needs these jurisdictions/accreditations.

    With ``pool_jurisdiction`` set, the rule applies only to pools of that
    jurisdiction (e.g. health data needs ``hds`` in FR and ``bsi-c5`` in DE).
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
    source: str = Field(min_length=1, description="The text this rule encodes.")
    description: str | None = None


class AccreditationEquivalence(_Strict):
    """``accreditation`` is also satisfied by any of ``satisfied_by``."""

    accreditation: Identifier
    satisfied_by: list[Identifier] = Field(min_length=1)
    source: str = Field(min_length=1)


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


def load_bundle(path: str | Path, *, text: str | None = None) -> Bundle:
    """Load and fully validate a bundle file; raises :class:`BundleError` listing every issue."""
    bundle = load_yaml_model(path, Bundle, text=text)
    issues = check_references(bundle, str(path))
    if issues:
        raise BundleError(issues)
    return bundle


def default_bundle_path() -> Path:
    """The default bundle shipped with the package (used by ``corridor up``)."""
    return Path(__file__).parent / "bundles" / "default.yaml"


def check_references(bundle: Bundle, file: str) -> list[BundleIssue]:
    """Checks across sections of a schema-valid bundle; returns every issue found."""
    issues: list[BundleIssue] = []

    def issue(path: str, message: str) -> None:
        issues.append(BundleIssue(file, path, message))

    def check_marking(path: str, value: str) -> str | None:
        try:
            return parse_marking(value).id
        except UnknownMarkingError as exc:
            issue(path, str(exc))
            return None

    for section in ("pools", "tenants", "models", "requirements", "declarations", "priority_classes"):
        counts = Counter(item.id for item in getattr(bundle, section))
        for index, item in enumerate(getattr(bundle, section)):
            if counts[item.id] > 1:
                issue(f"{section}[{index}].id", f"duplicate id {item.id!r}")

    model_ids = {model.id for model in bundle.models}
    tenant_ids = {tenant.id for tenant in bundle.tenants}
    for index, model in enumerate(bundle.models):
        for m, marking in enumerate(model.markings):
            check_marking(f"models[{index}].markings[{m}]", marking)
    for index, tenant in enumerate(bundle.tenants):
        path = f"tenants[{index}]"
        allowed = {check_marking(f"{path}.markings[{m}]", v) for m, v in enumerate(tenant.markings)}
        default = check_marking(f"{path}.default_marking", tenant.default_marking)
        if default is not None and default not in allowed:
            issue(f"{path}.default_marking", f"{default!r} is not among the tenant's markings")
        if tenant.home not in tenant.residency:
            issue(f"{path}.residency", f"must include the tenant's home jurisdiction {tenant.home!r}")
        for m, model_id in enumerate(tenant.models):
            if model_id not in model_ids:
                issue(f"{path}.models[{m}]", f"unknown model {model_id!r}; known: {sorted(model_ids)}")
    for index, rule in enumerate(bundle.requirements):
        if rule.when.marking is not None:
            check_marking(f"requirements[{index}].when.marking", rule.when.marking)
        if rule.jurisdictions is None and not rule.accreditations:
            issue(f"requirements[{index}]", "requires nothing: give jurisdictions or accreditations")
    for index, eq in enumerate(bundle.equivalences.markings):
        for side in JURISDICTIONS:
            marking_id = check_marking(f"equivalences.markings[{index}].{side}", getattr(eq, side))
            if marking_id is not None and parse_marking(marking_id).scheme != Scheme(side):
                issue(f"equivalences.markings[{index}].{side}", f"{marking_id!r} is not a {side} marking")
    max_window = dt.timedelta(hours=bundle.settings.crisis_max_hours)
    for index, declaration in enumerate(bundle.declarations):
        path = f"declarations[{index}]"
        if declaration.valid_until <= declaration.valid_from:
            issue(f"{path}.valid_until", "must be after valid_from")
        elif declaration.valid_until - declaration.valid_from > max_window:
            issue(f"{path}.valid_until", f"window exceeds settings.crisis_max_hours "
                  f"({bundle.settings.crisis_max_hours:g} h)")
        for a, approval in enumerate(declaration.approvals):
            if approval.operator == declaration.declared_by.operator:
                issue(f"{path}.approvals[{a}]", "the declarer cannot approve their own declaration")
        for where, problem in scope_issues(declaration.scope, tenant_ids, model_ids, f"{path}.scope"):
            issue(where, problem)
    for index, priority in enumerate(bundle.priority_classes):
        path = f"priority_classes[{index}]"
        if priority.id == "standard":
            issue(f"{path}.id", "'standard' is the implicit lowest class; name this one otherwise")
        for t, tenant_id in enumerate(priority.tenants or ()):
            if tenant_id not in tenant_ids:
                issue(f"{path}.tenants[{t}]", f"unknown tenant {tenant_id!r}; known: {sorted(tenant_ids)}")
        for m, marking in enumerate(priority.markings or ()):
            check_marking(f"{path}.markings[{m}]", marking)
    return issues
