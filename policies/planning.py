"""Planning a decision: everything that does not depend on the pool, once per workload.

A *plan* holds, per jurisdiction, the reasons that already deny its pools,
the declaration a crossing there would use, the requirement rules that apply
and the accreditation *checks* each pool must pass. :class:`policies.Policy`
then only runs the checks per pool (see ``rulebook.py``).

How a jurisdiction ``J`` is planned for data whose owner (the tenant) is at
home in ``H``:

- **No crossing needed** (``J`` in the tenant's residency and no rule of the
  marking keeps it out of ``J``): the rules of the marking and of each data
  flag that apply in ``J`` (``pool_jurisdiction`` unset or ``J``; ``origin``
  unset or ``H``) must hold.
- **A crossing** needs an active declaration for the tenant, model, marking
  and direction ``H->J`` that also names every data flag of the workload
  (``DATA_FLAG_NOT_DECLARED`` otherwise), and no national-only caveat
  (``CAVEAT_NATIONAL_ONLY``). Under it the owner's rules cross with the data:
  the *home* rules (those that apply in ``H``) must hold on the foreign pool,
  where a home accreditation counts only if the pool holds it or an
  accreditation equivalence the bundle declares (crisis-only ones included);
  with none declared the crossing fails with ``NO_EQUIVALENCE`` naming the
  accreditation. *And* the *host* rules of ``J`` for the bilateral
  equivalent marking (``DR`` ≡ ``VS-NfD``) must hold, as for the host's own
  data. A national marking without an equivalent does not cross.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from policies.bundle import ATTESTATION_RANK, JURISDICTIONS, Bundle, Declaration, Requirement, Tenant
from policies.decision import Reason, ReasonCode
from policies.markings import caveat_catalogue, parse_marking
from policies.workload import Workload

R = ReasonCode
_PLAN_CACHE_SIZE = 4096

#: What may satisfy a required accreditation: (held id, via an equivalence, crisis-only).
Satisfier = tuple[str, bool, bool]
#: (rule id, subject, accreditation, label for reasons, satisfiers, minimum attestation rank,
#:  declaration id when a missing accreditation means NO_EQUIVALENCE, else None)
Check = tuple[str, str, str, str, tuple[Satisfier, ...], int, str | None]


@dataclass(frozen=True, slots=True)
class JurisdictionPlan:
    reasons: tuple[Reason, ...]  # every pool-independent reason for pools of this jurisdiction
    declaration: str | None  # the declaration an allowed crossing uses
    checks: tuple[Check, ...]
    applied: tuple[str, ...]  # requirement rule ids that apply here


@dataclass(frozen=True, slots=True)
class Plan:
    workload: Workload  # as decided: the effective marking
    at: dt.datetime
    at_ts: float
    common: tuple[Reason, ...]  # reasons that hold for every pool
    jurisdictions: dict[str, JurisdictionPlan]


class Planner:
    """The bundle's rules indexed for planning. Immutable once built."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.tenants = {tenant.id: tenant for tenant in bundle.tenants}
        self.models = {model.id: model for model in bundle.models}
        self.tenant_markings = {t.id: frozenset(parse_marking(m).id for m in t.markings)
                                for t in bundle.tenants}
        self.tenant_minimum = {t.id: parse_marking(t.minimum_marking) for t in bundle.tenants
                               if t.minimum_marking is not None}
        self.model_markings = {m.id: frozenset(parse_marking(x).id for x in m.markings)
                               for m in bundle.models}
        self.by_marking: dict[str, list[Requirement]] = {}
        self.by_flag: dict[str, list[Requirement]] = {}
        for rule in bundle.requirements:
            if rule.when.marking is not None:
                self.by_marking.setdefault(parse_marking(rule.when.marking).id, []).append(rule)
            else:
                self.by_flag.setdefault(rule.when.data_flag, []).append(rule)
        self.equivalent: dict[tuple[str, str], str] = {}  # (marking id, jurisdiction) -> marking id
        for eq in bundle.equivalences.markings:
            fr, de = parse_marking(eq.FR).id, parse_marking(eq.DE).id
            self.equivalent[(fr, "DE")] = de
            self.equivalent[(de, "FR")] = fr
        self._satisfier_cache: dict[tuple[str, str, bool], tuple[Satisfier, ...]] = {}
        # per (tenant, marking, flags, caveats), with no declaration in play: what each
        # jurisdiction owes, before the reasons common to all pools
        self._plan_cache: dict[tuple, dict[str, JurisdictionPlan]] = {}

    def satisfiers(self, rule: str, accreditation: str, crisis: bool) -> tuple[Satisfier, ...]:
        """The accreditation itself, then its declared equivalents for ``rule`` (crisis-only
        ones only when ``crisis``)."""
        key = (rule, accreditation, crisis)
        cached = self._satisfier_cache.get(key)
        if cached is None:
            found: list[Satisfier] = [(accreditation, False, False)]
            for eq in self.bundle.equivalences.accreditations:
                if (eq.accreditation == accreditation and (eq.rules is None or rule in eq.rules)
                        and (crisis or not eq.crisis_only)):
                    found.extend((held, True, eq.crisis_only) for held in eq.satisfied_by
                                 if (held, True, eq.crisis_only) not in found)
            cached = self._satisfier_cache[key] = tuple(found)
        return cached

    # -- the plan ----------------------------------------------------------------

    def plan(self, workload: Workload, at: dt.datetime,
             extra_declarations: Sequence[Declaration]) -> Plan:
        if at.tzinfo is None:
            raise ValueError(f"decision time must be timezone-aware, got naive {at.isoformat()}")
        common: list[Reason] = []
        tenant = self.tenants.get(workload.tenant)
        if tenant is not None:
            workload = workload.at_minimum(self.tenant_minimum.get(tenant.id), by="tenant",
                                           source=tenant.id)
        marking = workload.marking
        if not marking.placeable:
            common.append(Reason.of(R.CLASSIFIED_NEVER, "classified-never",
                                    marking=marking.id, level=marking.level))
        if tenant is None:
            common.append(Reason.of(R.UNKNOWN_TENANT, "tenant-marking", tenant=workload.tenant))
            unknown = JurisdictionPlan(tuple(common), None, (), ())
            return Plan(workload, at, at.timestamp(), tuple(common), {j: unknown for j in JURISDICTIONS})
        if marking.id not in self.tenant_markings[tenant.id]:
            common.append(Reason.of(R.MARKING_NOT_ALLOWED_FOR_TENANT, "tenant-marking",
                                    tenant=tenant.id, marking=marking.id,
                                    allowed=", ".join(tenant.markings)))
        common.extend(self._model_reasons(workload, tenant.models))
        flags = workload.data_flags | frozenset(tenant.data_flags)
        declarations = [d for d in (*self.bundle.declarations, *extra_declarations)
                        if self._covers(d, workload, at)]
        key = (tenant.id, marking.id, flags, workload.caveats)
        plans = None if declarations else self._plan_cache.get(key)
        if plans is None:
            plans = {j: _JurisdictionPlanner(self, workload, tenant, flags, j).plan(declarations)
                     for j in JURISDICTIONS}
            if not declarations:
                if len(self._plan_cache) >= _PLAN_CACHE_SIZE:
                    self._plan_cache.clear()
                self._plan_cache[key] = plans
        if common:
            prefix = tuple(common)
            plans = {j: JurisdictionPlan(prefix + p.reasons, p.declaration, p.checks, p.applied)
                     for j, p in plans.items()}
        return Plan(workload, at, at.timestamp(), tuple(common), plans)

    def _model_reasons(self, workload: Workload, tenant_models: list[str]) -> list[Reason]:
        if workload.model is None:
            return []
        model = self.models.get(workload.model)
        if model is None:
            return [Reason.of(R.UNKNOWN_MODEL, "model-allowed", model=workload.model)]
        reasons = []
        details = {"model": model.id, "tenant": workload.tenant, "marking": workload.marking.id}
        if model.id not in tenant_models:
            reasons.append(Reason.of(R.MODEL_NOT_ALLOWED, "model-allowed", **details))
        if workload.marking.id not in self.model_markings[model.id]:
            reasons.append(Reason.of(R.MODEL_NOT_ALLOWED_FOR_MARKING, "model-allowed",
                                     **details, allowed=", ".join(model.markings)))
        if self.bundle.settings.autarky and model.digest is None:
            reasons.append(Reason.of(R.MODEL_NOT_PINNED, "model-pinned", **details))
        elif model.digest is not None and (workload.model_digest is not None
                                           or self.bundle.settings.autarky):
            if workload.model_digest != model.digest:
                reasons.append(Reason.of(R.MODEL_DIGEST_MISMATCH, "model-pinned", **details,
                                         got=workload.model_digest or "none", pinned=model.digest))
        return reasons

    def covering(self, workload: Workload, at: dt.datetime,
                 extra_declarations: Sequence[Declaration]) -> list[str]:
        """Ids of the active declarations whose scope covers ``workload`` at its effective
        marking (the tenant's minimum applied), whether or not it needs to cross."""
        tenant = self.tenants.get(workload.tenant)
        if tenant is not None:
            workload = workload.at_minimum(self.tenant_minimum.get(tenant.id), by="tenant",
                                           source=tenant.id)
        return [d.id for d in (*self.bundle.declarations, *extra_declarations)
                if self._covers(d, workload, at)]

    @staticmethod
    def _covers(declaration: Declaration, workload: Workload, at: dt.datetime) -> bool:
        scope = declaration.scope
        return (declaration.status(at) == "active"
                and workload.tenant in scope.tenants
                and workload.model is not None and workload.model in scope.models
                and any(parse_marking(m).id == workload.marking.id for m in scope.markings))


def applicable(rules: Iterable[Requirement], jurisdiction: str, origin: str) -> list[Requirement]:
    """The rules that apply to pools of ``jurisdiction`` for data at home in ``origin``."""
    return [r for r in rules if r.pool_jurisdiction in (None, jurisdiction)
            and r.when.origin in (None, origin)]


class _JurisdictionPlanner:
    """Plans one jurisdiction for one workload (a short-lived helper; see the module docstring)."""

    def __init__(self, planner: Planner, workload: Workload, tenant: Tenant, flags: frozenset[str],
                 jurisdiction: str) -> None:
        self.p = planner
        self.workload = workload
        self.tenant = tenant
        self.flags = sorted(flags)
        self.j = jurisdiction
        self.reasons: list[Reason] = []
        self.checks: list[Check] = []
        self.applied: dict[str, None] = {}

    def _rules(self, marking: str | None, where: str) -> list[tuple[Requirement, str]]:
        """(rule, subject) for the marking and the data flags, applying in ``where``."""
        home = self.tenant.home
        found = [(r, f"{self.workload.marking.id} data" if marking == self.workload.marking.id
                  else f"{self.workload.marking.id} data (as {marking})")
                 for r in applicable(self.p.by_marking.get(marking, ()), where, home)] if marking else []
        for flag in self.flags:
            found.extend((r, f"{flag} data") for r in applicable(self.p.by_flag.get(flag, ()), where, home))
        return found

    def plan(self, declarations: list[Declaration]) -> JurisdictionPlan:
        j, tenant, marking = self.j, self.tenant, self.workload.marking.id
        marking_rules = applicable(self.p.by_marking.get(marking, ()), j, tenant.home)
        blocked = [r for r in marking_rules if r.jurisdictions is not None and j not in r.jurisdictions]
        crossing_needed = j not in tenant.residency or bool(blocked)
        for caveat in sorted(self.workload.caveats):
            required = caveat_catalogue()[caveat].jurisdiction
            if required != j or (crossing_needed and j != tenant.home):
                self.reasons.append(Reason.of(R.CAVEAT_NATIONAL_ONLY, "caveat-national-only",
                                              caveat=caveat, required=required, jurisdiction=j))
        crossing = None
        if crossing_needed and j != tenant.home and not self.workload.caveats:
            crossing = self._crossing(declarations)
        if crossing is None:
            if j not in tenant.residency:
                self.reasons.append(Reason.of(R.RESIDENCY, "residency", tenant=tenant.id,
                                              residency=", ".join(tenant.residency), jurisdiction=j))
            for rule, subject in self._rules(marking, j):
                self._require(rule, subject, jurisdictions=True, crossing=None, home=False)
            return self._done(None)
        host_marking: str | None = marking
        if blocked:
            host_marking = self.p.equivalent.get((marking, j))
            if host_marking is None:
                for rule in blocked:
                    self.applied[rule.id] = None
                    self.reasons.append(Reason.of(R.NO_EQUIVALENCE, rule.id, declaration=crossing.id,
                                                  subject=f"{marking} data", jurisdiction=j,
                                                  missing=marking, marking=marking))
        home_rules = self._rules(marking if host_marking else None, tenant.home)
        home_ids = {rule.id for rule, _ in home_rules}
        for rule, subject in home_rules:  # the owner's rules cross with the data
            self._require(rule, subject, jurisdictions=rule.when.marking is None, crossing=crossing,
                          home=True)
        for rule, subject in self._rules(host_marking, j):  # and the host's rules apply
            if rule.id not in home_ids:
                self._require(rule, subject, jurisdictions=True, crossing=crossing, home=False)
        return self._done(crossing.id)

    def _crossing(self, declarations: list[Declaration]) -> Declaration | None:
        """The first declaration covering this direction that names every data flag."""
        direction = f"{self.tenant.home}->{self.j}"
        candidates = [d for d in declarations if direction in d.scope.directions]
        for declaration in candidates:
            if set(self.flags) <= set(declaration.scope.data_flags):
                return declaration
        if candidates:
            for flag in self.flags:
                if flag not in candidates[0].scope.data_flags:
                    self.reasons.append(Reason.of(
                        R.DATA_FLAG_NOT_DECLARED, "declaration-scope", declaration=candidates[0].id,
                        flag=flag, tenant=self.tenant.id, jurisdiction=self.j))
        return None

    def _require(self, rule: Requirement, subject: str, *, jurisdictions: bool,
                 crossing: Declaration | None, home: bool) -> None:
        self.applied[rule.id] = None
        if jurisdictions and rule.jurisdictions is not None and self.j not in rule.jurisdictions:
            self.reasons.append(Reason.of(R.WRONG_JURISDICTION, rule.id, subject=subject,
                                          required=", ".join(rule.jurisdictions), jurisdiction=self.j))
            return
        for accreditation in rule.accreditations:
            attestation = rule.attestation.get(accreditation)
            label = f"{accreditation} ({attestation} attestation)" if attestation else accreditation
            satisfiers = self.p.satisfiers(rule.id, accreditation, crossing is not None)
            if len(satisfiers) > 1:
                label += " or its declared equivalent " + " or ".join(s[0] for s in satisfiers[1:])
            no_equivalence = crossing.id if home and crossing is not None and len(satisfiers) == 1 else None
            self.checks.append((rule.id, subject, accreditation, label, satisfiers,
                                ATTESTATION_RANK.get(attestation, 0) if attestation else 0,
                                no_equivalence))

    def _done(self, declaration: str | None) -> JurisdictionPlan:
        return JurisdictionPlan(tuple(self.reasons), declaration, tuple(self.checks),
                                tuple(self.applied))
