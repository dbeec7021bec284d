"""The rulebook: ``Policy.decide(workload, pool)`` for every kind of workload.

Rules, in the order they are evaluated (ids as they appear in decisions):

``classified-never``      markings above restricted are never placed.
``tenant-marking``        the tenant exists and may send this marking. A tenant's
                          ``minimum_marking`` first raises a workload declared below it
                          (the decision's ``marking_raised`` says so).
``model-allowed``         the model exists, the tenant may use it, it may process the marking.
``model-pinned``          a pinned artifact digest must match (always required in autarky mode).
``caveat-national-only``  a national-only caveat keeps the data in its jurisdiction.
``residency``             the pool lies in the tenant's residency, or an active crisis
                          declaration covers the crossing.
``declaration-scope``     a crossing declaration must name every data flag of the workload.
<requirement ids>         the bundle's requirement rules for the marking and data flags:
                          jurisdictions and accreditations (expired counts as absent;
                          an attestation below the required type counts as absent).
                          Under a declaration the owner's rules cross with the data and
                          the host's rules for the equivalent marking apply too
                          (``policies.planning`` explains how).

Default deny: a decision is allowed only when no rule denied. Every rule is
evaluated, so a decision lists every reason. An exception inside evaluation
becomes a deny with ``EVALUATION_ERROR`` (fail closed).

Work that does not depend on the pool (tenant, model, declarations, and what
each jurisdiction requires) is done once per workload in a *plan*
(``policies.planning``); per pool only the accreditation checks remain, and
pools with the same accreditations share their verdict.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.bundle import ATTESTATION_RANK, Bundle, Declaration, Pool, default_bundle_path
from policies.decision import Decision, Evaluation, Reason, ReasonCode, Reliance
from policies.planning import Plan, Planner
from policies.profiles import ProfileVerdicts, Verdict
from policies.validation import load_bundle
from policies.workload import Workload

R = ReasonCode

#: (reasons that deny, the declaration an allowed crossing uses, the rules that applied,
#:  what an allowed decision relied on)
_Verdict = tuple[tuple[Reason, ...], str | None, tuple[str, ...], tuple[Reliance, ...]]


@dataclass(frozen=True, slots=True)
class _CompiledPool:
    pool: Pool
    jurisdiction: str
    expiry: dict[str, float]  # accreditation id -> first instant (epoch s) it is no longer valid
    rank: dict[str, int]  # accreditation id -> attestation rank (0: none stated)
    valid_until: dict[str, str]  # accreditation id -> last valid day (ISO date)
    profile: int  # pools of one jurisdiction with the same accreditations and expiries share it


#: Builds a Decision from a tuple of its fields without the keyword handling of its __new__.
_decision = functools.partial(tuple.__new__, Decision)


def _end_of_day_ts(day: dt.date) -> float:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc).timestamp()


def _last_day(until: float) -> str:
    end = dt.datetime.fromtimestamp(until, dt.timezone.utc).date()
    return (end - dt.timedelta(days=1)).isoformat()


@functools.lru_cache(maxsize=4096)
def _accreditation_reason(rule: str, subject: str, accreditation: str,
                          expired_until: float | None) -> Reason:
    """The reason for a missing or expired accreditation (cached: the same facts recur)."""
    if expired_until is None:
        return Reason.of(R.MISSING_ACCREDITATION, rule, subject=subject, accreditation=accreditation)
    return Reason.of(R.EXPIRED_ACCREDITATION, rule, subject=subject, accreditation=accreditation,
                     valid_until=_last_day(expired_until))


@functools.lru_cache(maxsize=1024)
def _no_equivalence(rule: str, declaration: str, subject: str, accreditation: str,
                    jurisdiction: str) -> Reason:
    return Reason.of(R.NO_EQUIVALENCE, rule, declaration=declaration, subject=subject,
                     jurisdiction=jurisdiction, missing=accreditation, accreditation=accreditation)


#: Builds a Reliance from (rule, accreditation, held, valid_until, equivalence, crisis_only).
_reliance = functools.partial(tuple.__new__, Reliance)


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
            rank = {a.id: ATTESTATION_RANK[a.attestation] for a in pool.accreditations if a.attestation}
            key = (pool.jurisdiction, tuple(sorted(expiry.items())), tuple(sorted(rank.items())))
            profile = profiles.setdefault(key, len(profiles))
            valid_until = {a.id: a.valid_until.isoformat() for a in pool.accreditations}
            self.pools[pool.id] = _CompiledPool(pool, pool.jurisdiction, expiry, rank, valid_until,
                                                profile)
        self._planner = Planner(bundle)
        self._name, self._version = bundle.name, bundle.version
        self.tenants = self._planner.tenants
        self.models = self._planner.models

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
            plan = self._planner.plan(workload, at, declarations)
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
        """Decide ``workload`` against ``pools`` (default: every pool of the bundle).

        The evaluation's ``workload`` is the workload as decided (effective marking).
        """
        at = at or dt.datetime.now(dt.timezone.utc)
        pool_ids = [p if isinstance(p, str) else p.id for p in (pools if pools is not None
                                                                else self.pools)]
        try:
            plan = self._planner.plan(workload, at, declarations)
        except Exception as exc:  # noqa: BLE001 - fail closed
            return Evaluation(workload, self.digest,
                              [self._error_decision(workload, p, at, exc) for p in pool_ids])
        # the steps of _evaluate, inlined: pools of one profile share their verdict
        verdicts: dict[int, _Verdict] = {}
        decisions = []
        append, pools_get, verdict_of = decisions.append, self.pools.get, self._verdict
        digest, decided, when, name, version = self.digest, plan.workload, plan.at, self._name, self._version
        for pool_id in pool_ids:
            try:
                compiled = pools_get(pool_id)
                if compiled is None:
                    append(self._evaluate(plan, pool_id))
                    continue
                verdict = verdicts.get(compiled.profile)
                if verdict is None:
                    verdict = verdicts[compiled.profile] = verdict_of(plan, compiled)
                reasons, declaration, applied, relied = verdict
                append(_decision((not reasons, pool_id, compiled.jurisdiction, reasons, declaration,
                                  digest, decided, when, applied, relied, name, version)))
            except Exception as exc:  # noqa: BLE001 - fail closed
                append(self._error_decision(workload, pool_id, at, exc))
        return Evaluation(decided, digest, decisions)

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
        header = (self.digest, self._name, self._version, ids, jurisdictions, profile_of)
        try:
            plan = self._planner.plan(workload, at, declarations)
        except Exception as exc:  # noqa: BLE001 - fail closed
            error = Verdict.failed(exc)
            return ProfileVerdicts(workload, at, *header, (error,) * len(representatives))
        verdicts = []
        for compiled in representatives:
            try:
                verdicts.append(Verdict(*self._verdict(plan, compiled)))
            except Exception as exc:  # noqa: BLE001 - fail closed
                verdicts.append(Verdict.failed(exc))
        return ProfileVerdicts(plan.workload, plan.at, *header, tuple(verdicts))

    def covering_declarations(self, workload: Workload, *, at: dt.datetime | None = None,
                              declarations: Sequence[Declaration] = ()) -> list[str]:
        """Ids of the active crisis declarations (the bundle's and ``declarations``) whose
        scope covers ``workload`` (tenant, model and effective marking), whether or not it
        crosses. Who calls it: the gateway, to rank a waiting request (``policies.priority``)."""
        return self._planner.covering(workload, at or dt.datetime.now(dt.timezone.utc), declarations)

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

    def _evaluate(self, plan: Plan, pool_id: str) -> Decision:
        """One pool's decision (``decide_all`` inlines the same steps and shares verdicts)."""
        compiled = self.pools.get(pool_id)
        if compiled is None:
            reason = Reason.of(R.UNKNOWN_POOL, "pool-known", pool=pool_id)
            return _decision((False, pool_id, None, (*plan.common, reason), None, self.digest,
                              plan.workload, plan.at, (), (), self._name, self._version))
        reasons, declaration, applied, relied = self._verdict(plan, compiled)
        return _decision((not reasons, pool_id, compiled.jurisdiction, reasons, declaration,
                          self.digest, plan.workload, plan.at, applied, relied,
                          self._name, self._version))

    @staticmethod
    def _verdict(plan: Plan, compiled: _CompiledPool) -> _Verdict:
        """The reasons that deny a pool of this profile (none: allowed), the declaration an
        allowed crossing uses, and the accreditations an allowed decision relied on."""
        jplan = plan.jurisdictions[compiled.jurisdiction]
        reasons = jplan.reasons
        relied: list[tuple[str, str, str, bool, bool]] = []
        if jplan.checks:
            expiry = compiled.expiry
            at_ts = plan.at_ts
            for rule, subject, accreditation, label, satisfiers, rank, no_equivalence in jplan.checks:
                expired_until = None
                for held, equivalence, crisis_only in satisfiers:
                    until = expiry.get(held)
                    if until is None or (rank and not equivalence and compiled.rank.get(held, 0) < rank):
                        continue
                    if until > at_ts:
                        relied.append((rule, accreditation, held, equivalence, crisis_only))
                        break
                    expired_until = until
                else:
                    if no_equivalence is not None and expired_until is None:
                        reasons += (_no_equivalence(rule, no_equivalence, subject, accreditation,
                                                    compiled.jurisdiction),)
                    else:
                        reasons += (_accreditation_reason(rule, subject, label, expired_until),)
        if reasons:
            return reasons, None, jplan.applied, ()
        valid_until = compiled.valid_until
        return reasons, jplan.declaration, jplan.applied, tuple(
            _reliance((rule, accreditation, held, valid_until[held], equivalence, crisis_only))
            for rule, accreditation, held, equivalence, crisis_only in relied)

    def _error_decision(self, workload: Any, pool_id: str, at: dt.datetime,
                        exc: Exception) -> Decision:
        reason = Reason.of(R.EVALUATION_ERROR, "evaluation", error=f"{type(exc).__name__}: {exc}",
                           pool=pool_id)
        jurisdiction = getattr(getattr(self.pools.get(pool_id), "pool", None), "jurisdiction", None)
        return Decision(False, pool_id, jurisdiction, (reason,), None, self.digest, workload, at,
                        policy_name=self.bundle.name, policy_version=self.bundle.version)


def decide(policy: Policy, workload: Workload, pool: Pool | str, *,
           at: dt.datetime | None = None, declarations: Sequence[Declaration] = ()) -> Decision:
    """Functional form of :meth:`Policy.decide`."""
    return policy.decide(workload, pool, at=at, declarations=declarations)
