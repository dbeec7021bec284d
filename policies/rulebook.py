"""The rulebook: ``Policy.decide(workload, pool)`` for every kind of workload.

Rules, in the order they are evaluated (ids as they appear in decisions):

``classified-never``  markings above restricted are never placed.
``tenant-marking``    the tenant exists and may send this marking.
``model-allowed``     the model exists, the tenant may use it, it may process the marking.
``model-pinned``      a pinned artifact digest must match (always required in autarky mode).
``residency``         the pool lies in the tenant's residency, or an active crisis
                      declaration covers the crossing.
<requirement ids>     the bundle's requirement rules for the marking and data flags:
                      jurisdictions and accreditations (expired counts as absent). A
                      national marking crosses only under an active declaration *and*
                      a bilateral marking equivalence; the equivalent marking's rules
                      then apply in the other jurisdiction.

Default deny: a decision is allowed only when no rule denied. Every rule is
evaluated, so a decision lists every reason. An exception inside evaluation
becomes a deny with ``EVALUATION_ERROR`` (fail closed).

Work that does not depend on the pool (tenant, model, declarations, and what
each jurisdiction requires) is done once per workload in a *plan*; per pool
only the jurisdiction's verdict and the accreditation checks remain.

One module because the plan, the per-pool evaluation and the shared verdicts
are one algorithm whose parts only make sense together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
import functools
from pathlib import Path
from typing import Any

from policies.bundle import JURISDICTIONS, Bundle, Declaration, Pool, Requirement, default_bundle_path, load_bundle
from policies.decision import Decision, Evaluation, Reason, ReasonCode
from policies.markings import parse_marking
from policies.profiles import ProfileVerdicts, Verdict
from policies.workload import Workload

R = ReasonCode


# (rule id, subject, accreditation, accreditations that satisfy it: itself first, then equivalents)
_AccreditationCheck = tuple[str, str, str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class _JurisdictionPlan:
    reasons: tuple[Reason, ...]  # every pool-independent reason for pools of this jurisdiction
    declaration: str | None
    checks: tuple[_AccreditationCheck, ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    workload: Workload
    at: dt.datetime
    at_ts: float
    common: tuple[Reason, ...]  # reasons that hold for every pool
    jurisdictions: dict[str, _JurisdictionPlan]


@dataclass(frozen=True, slots=True)
class _CompiledPool:
    pool: Pool
    jurisdiction: str
    expiry: dict[str, float]  # accreditation id -> first instant (epoch s) it is no longer valid
    profile: int  # pools of one jurisdiction with the same accreditations and expiries share it


#: Builds a Decision from a tuple of its fields without the keyword handling of its __new__.
_decision = functools.partial(tuple.__new__, Decision)


def _end_of_day_ts(day: dt.date) -> float:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc).timestamp()


@functools.lru_cache(maxsize=4096)
def _accreditation_reason(rule: str, subject: str, accreditation: str,
                          expired_until: float | None) -> Reason:
    """The reason for a missing or expired accreditation (cached: the same facts recur)."""
    if expired_until is None:
        return Reason.of(R.MISSING_ACCREDITATION, rule, subject=subject, accreditation=accreditation)
    end = dt.datetime.fromtimestamp(expired_until, dt.timezone.utc).date()
    return Reason.of(R.EXPIRED_ACCREDITATION, rule, subject=subject, accreditation=accreditation,
                     valid_until=(end - dt.timedelta(days=1)).isoformat())


class Policy:
    """A validated bundle compiled for fast decisions. Immutable; share it freely.

    Construct from a :class:`Bundle` or with :meth:`load`. Bad configuration
    fails at construction (:class:`policies.BundleError`), never at decision time.
    """

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.digest = bundle.digest()
        profiles: dict[tuple, int] = {}
        self.pools: dict[str, _CompiledPool] = {}
        for pool in bundle.pools:
            expiry = {a.id: _end_of_day_ts(a.valid_until) for a in pool.accreditations}
            key = (pool.jurisdiction, tuple(sorted(expiry.items())))
            profile = profiles.setdefault(key, len(profiles))
            self.pools[pool.id] = _CompiledPool(pool, pool.jurisdiction, expiry, profile)
        self.tenants = {tenant.id: tenant for tenant in bundle.tenants}
        self.models = {model.id: model for model in bundle.models}
        self._tenant_markings = {t.id: frozenset(parse_marking(m).id for m in t.markings)
                                 for t in bundle.tenants}
        self._model_markings = {m.id: frozenset(parse_marking(x).id for x in m.markings)
                                for m in bundle.models}
        self._rules_by_marking: dict[str, list[Requirement]] = {}
        self._rules_by_flag: dict[str, list[Requirement]] = {}
        for rule in bundle.requirements:
            if rule.when.marking is not None:
                key = parse_marking(rule.when.marking).id
                self._rules_by_marking.setdefault(key, []).append(rule)
            else:
                self._rules_by_flag.setdefault(rule.when.data_flag, []).append(rule)
        self._satisfied_by: dict[str, tuple[str, ...]] = {}
        for eq in bundle.equivalences.accreditations:
            current = self._satisfied_by.get(eq.accreditation, (eq.accreditation,))
            self._satisfied_by[eq.accreditation] = current + tuple(eq.satisfied_by)
        self._equivalent: dict[tuple[str, str], str] = {}  # (marking id, jurisdiction) -> marking id
        for eq in bundle.equivalences.markings:
            fr, de = parse_marking(eq.FR).id, parse_marking(eq.DE).id
            self._equivalent[(fr, "DE")] = de
            self._equivalent[(de, "FR")] = fr

    @classmethod
    def load(cls, path: str | Path | None = None) -> Policy:
        """Load a bundle file (default: the shipped default bundle) and compile it."""
        return cls(load_bundle(path or default_bundle_path()))

    # -- public API ---------------------------------------------------------

    def decide(
        self,
        workload: Workload,
        pool: Pool | str,
        *,
        at: dt.datetime | None = None,
        declarations: Sequence[Declaration] = (),
    ) -> Decision:
        """Decide whether ``workload`` may run on ``pool`` at ``at`` (default: now, UTC).

        ``declarations`` adds crisis declarations held outside the bundle (the
        operator API's) to the bundle's own. Never raises for a deny.
        """
        at = at or dt.datetime.now(dt.timezone.utc)
        pool_id = pool if isinstance(pool, str) else pool.id
        try:
            plan = self._plan(workload, at, declarations)
            return self._evaluate(plan, pool_id)
        except Exception as exc:  # noqa: BLE001 - fail closed on any evaluation error
            return self._error_decision(workload, pool_id, at, exc)

    def decide_all(
        self,
        workload: Workload,
        pools: Iterable[Pool | str] | None = None,
        *,
        at: dt.datetime | None = None,
        declarations: Sequence[Declaration] = (),
    ) -> Evaluation:
        """Decide ``workload`` against ``pools`` (default: every pool of the bundle)."""
        at = at or dt.datetime.now(dt.timezone.utc)
        pool_ids = [p if isinstance(p, str) else p.id for p in (pools if pools is not None
                                                                else self.pools)]
        try:
            plan = self._plan(workload, at, declarations)
        except Exception as exc:  # noqa: BLE001 - fail closed
            return Evaluation(workload, self.digest,
                              [self._error_decision(workload, p, at, exc) for p in pool_ids])
        evaluate = self._evaluate
        verdicts: dict[int, tuple[tuple[Reason, ...], str | None]] = {}
        decisions = []
        for pool_id in pool_ids:
            try:
                decisions.append(evaluate(plan, pool_id, verdicts))
            except Exception as exc:  # noqa: BLE001 - fail closed
                decisions.append(self._error_decision(workload, pool_id, at, exc))
        return Evaluation(workload, self.digest, decisions)

    def decide_profiles(
        self,
        workload: Workload,
        *,
        at: dt.datetime | None = None,
        declarations: Sequence[Declaration] = (),
    ) -> ProfileVerdicts:
        """``decide_all`` over every pool of the bundle, evaluated once per pool profile.

        For callers that decide against very many pools (the placer): the cost
        grows with the number of profiles, not pools; decisions are built only
        for the pools asked about (:mod:`policies.profiles`).
        """
        at = at or dt.datetime.now(dt.timezone.utc)
        ids, jurisdictions, profile_of, representatives = self._profile_table
        try:
            plan = self._plan(workload, at, declarations)
        except Exception as exc:  # noqa: BLE001 - fail closed
            error = Verdict((), None, f"{type(exc).__name__}: {exc}")
            return ProfileVerdicts(workload, self.digest, at, ids, jurisdictions, profile_of,
                                   (error,) * len(representatives))
        verdicts = []
        for compiled in representatives:
            try:
                verdicts.append(Verdict(*self._verdict(plan, compiled)))
            except Exception as exc:  # noqa: BLE001 - fail closed
                verdicts.append(Verdict((), None, f"{type(exc).__name__}: {exc}"))
        return ProfileVerdicts(workload, self.digest, at, ids, jurisdictions, profile_of,
                               tuple(verdicts))

    def covering_declarations(self, workload: Workload, *, at: dt.datetime | None = None,
                              declarations: Sequence[Declaration] = ()) -> list[str]:
        """Ids of the active crisis declarations (the bundle's and ``declarations``) whose
        scope covers ``workload`` (tenant, model and marking), whether or not it crosses."""
        at = at or dt.datetime.now(dt.timezone.utc)
        return [d.id for d in (*self.bundle.declarations, *declarations)
                if self._covers(d, workload, at)]

    @functools.cached_property
    def _profile_table(self) -> tuple[tuple[str, ...], tuple[str, ...], tuple[int, ...],
                                      tuple[_CompiledPool, ...]]:
        """Pool ids, jurisdictions and profiles in bundle order, and one pool per profile."""
        compiled = list(self.pools.values())
        representatives: dict[int, _CompiledPool] = {}
        for pool in compiled:
            representatives.setdefault(pool.profile, pool)
        return (tuple(p.pool.id for p in compiled), tuple(p.jurisdiction for p in compiled),
                tuple(p.profile for p in compiled),
                tuple(representatives[i] for i in range(len(representatives))))

    # -- evaluation ---------------------------------------------------------

    def _evaluate(self, plan: _Plan, pool_id: str,
                  verdicts: dict[int, tuple[tuple[Reason, ...], str | None]] | None = None) -> Decision:
        """One pool's decision; ``verdicts`` shares the work between pools of one profile."""
        compiled = self.pools.get(pool_id)
        if compiled is None:
            reason = Reason.of(R.UNKNOWN_POOL, "pool-known", pool=pool_id)
            return Decision(False, pool_id, None, (*plan.common, reason), None, self.digest,
                            plan.workload, plan.at)
        verdict = verdicts.get(compiled.profile) if verdicts is not None else None
        if verdict is None:
            verdict = self._verdict(plan, compiled)
            if verdicts is not None:
                verdicts[compiled.profile] = verdict
        reasons, declaration = verdict
        return _decision((not reasons, pool_id, compiled.jurisdiction, reasons, declaration,
                          self.digest, plan.workload, plan.at))

    @staticmethod
    def _verdict(plan: _Plan, compiled: _CompiledPool) -> tuple[tuple[Reason, ...], str | None]:
        """The reasons that deny a pool of this profile (none: allowed) and the declaration
        an allowed crossing uses."""
        jplan = plan.jurisdictions[compiled.jurisdiction]
        reasons = jplan.reasons
        if jplan.checks:
            expiry = compiled.expiry
            at_ts = plan.at_ts
            for rule, subject, accreditation, satisfied_by in jplan.checks:
                expired_until = None
                for candidate in satisfied_by:
                    until = expiry.get(candidate)
                    if until is not None:
                        if until > at_ts:
                            break
                        expired_until = until
                else:
                    reasons += (_accreditation_reason(rule, subject, accreditation, expired_until),)
        return reasons, (None if reasons else jplan.declaration)

    def _error_decision(self, workload: Any, pool_id: str, at: dt.datetime,
                        exc: Exception) -> Decision:
        reason = Reason.of(R.EVALUATION_ERROR, "evaluation", error=f"{type(exc).__name__}: {exc}",
                           pool=pool_id)
        jurisdiction = getattr(getattr(self.pools.get(pool_id), "pool", None), "jurisdiction", None)
        return Decision(False, pool_id, jurisdiction, (reason,), None, self.digest, workload, at)

    # -- planning: everything that does not depend on the pool ----------------

    def _plan(self, workload: Workload, at: dt.datetime,
              extra_declarations: Sequence[Declaration]) -> _Plan:
        if at.tzinfo is None:
            raise ValueError(f"decision time must be timezone-aware, got naive {at.isoformat()}")
        marking = workload.marking
        common: list[Reason] = []
        if not marking.placeable:
            common.append(Reason.of(R.CLASSIFIED_NEVER, "classified-never",
                                    marking=marking.id, level=marking.level))
        tenant = self.tenants.get(workload.tenant)
        if tenant is None:
            common.append(Reason.of(R.UNKNOWN_TENANT, "tenant-marking", tenant=workload.tenant))
            unknown = _JurisdictionPlan(tuple(common), None, ())
            return _Plan(workload, at, at.timestamp(), tuple(common),
                         {j: unknown for j in JURISDICTIONS})
        if marking.id not in self._tenant_markings[tenant.id]:
            common.append(Reason.of(R.MARKING_NOT_ALLOWED_FOR_TENANT, "tenant-marking",
                                    tenant=tenant.id, marking=marking.id,
                                    allowed=", ".join(tenant.markings)))
        common.extend(self._model_reasons(workload, tenant.models))
        flags = workload.data_flags | frozenset(tenant.data_flags)
        declarations = [d for d in (*self.bundle.declarations, *extra_declarations)
                        if self._covers(d, workload, at)]
        plans = {j: self._plan_jurisdiction(workload, tenant, flags, j, declarations, tuple(common))
                 for j in JURISDICTIONS}
        return _Plan(workload, at, at.timestamp(), tuple(common), plans)

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
        if workload.marking.id not in self._model_markings[model.id]:
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

    @staticmethod
    def _covers(declaration: Declaration, workload: Workload, at: dt.datetime) -> bool:
        scope = declaration.scope
        return (declaration.status(at) == "active"
                and workload.tenant in scope.tenants
                and workload.model is not None and workload.model in scope.models
                and any(parse_marking(m).id == workload.marking.id for m in scope.markings))

    def _plan_jurisdiction(self, workload: Workload, tenant: Any, flags: frozenset[str],
                           jurisdiction: str, declarations: list[Declaration],
                           common: tuple[Reason, ...]) -> _JurisdictionPlan:
        """What pools of ``jurisdiction`` owe this workload: reasons that already deny
        them, the declaration a crossing would use, and the accreditations to check."""
        direction = f"{tenant.home}->{jurisdiction}"
        crossing = next((d for d in declarations if direction in d.scope.directions), None)
        reasons: list[Reason] = list(common)
        checks: list[_AccreditationCheck] = []
        used: str | None = None
        if jurisdiction not in tenant.residency:
            if crossing is None:
                reasons.append(Reason.of(R.RESIDENCY, "residency", tenant=tenant.id,
                                         residency=", ".join(tenant.residency),
                                         jurisdiction=jurisdiction))
            else:
                used = crossing.id
        marking = workload.marking.id
        for rule in self._applicable(self._rules_by_marking.get(marking, ()), jurisdiction):
            subject = f"{marking} data"
            if rule.jurisdictions is None or jurisdiction in rule.jurisdictions:
                checks.extend(self._checks(rule, subject))
                continue
            if crossing is None:
                reasons.append(Reason.of(R.WRONG_JURISDICTION, rule.id, subject=subject,
                                         required=", ".join(rule.jurisdictions),
                                         jurisdiction=jurisdiction))
                continue
            equivalent = self._equivalent.get((marking, jurisdiction))
            if equivalent is None:
                reasons.append(Reason.of(R.NO_EQUIVALENCE, rule.id, declaration=crossing.id,
                                         marking=marking, jurisdiction=jurisdiction))
                continue
            used = crossing.id
            for eq_rule in self._applicable(self._rules_by_marking.get(equivalent, ()), jurisdiction):
                eq_subject = f"{marking} data (as {equivalent})"
                if eq_rule.jurisdictions is not None and jurisdiction not in eq_rule.jurisdictions:
                    reasons.append(Reason.of(R.WRONG_JURISDICTION, eq_rule.id, subject=eq_subject,
                                             required=", ".join(eq_rule.jurisdictions),
                                             jurisdiction=jurisdiction))
                else:
                    checks.extend(self._checks(eq_rule, eq_subject))
        for flag in sorted(flags):
            for rule in self._applicable(self._rules_by_flag.get(flag, ()), jurisdiction):
                subject = f"{flag} data"
                if rule.jurisdictions is not None and jurisdiction not in rule.jurisdictions:
                    reasons.append(Reason.of(R.WRONG_JURISDICTION, rule.id, subject=subject,
                                             required=", ".join(rule.jurisdictions),
                                             jurisdiction=jurisdiction))
                else:
                    checks.extend(self._checks(rule, subject))
        return _JurisdictionPlan(tuple(reasons), used, tuple(checks))

    @staticmethod
    def _applicable(rules: Iterable[Requirement], jurisdiction: str) -> list[Requirement]:
        return [r for r in rules if r.pool_jurisdiction in (None, jurisdiction)]

    def _checks(self, rule: Requirement, subject: str) -> list[_AccreditationCheck]:
        return [(rule.id, subject, a, self._satisfied_by.get(a, (a,))) for a in rule.accreditations]


def decide(policy: Policy, workload: Workload, pool: Pool | str, *,
           at: dt.datetime | None = None, declarations: Sequence[Declaration] = ()) -> Decision:
    """Functional form of :meth:`Policy.decide`."""
    return policy.decide(workload, pool, at=at, declarations=declarations)
