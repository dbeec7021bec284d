"""One workload against every pool, evaluated once per pool *profile* (for large bundles).

Pools of one jurisdiction that hold the same accreditations with the same
expiry dates (and attestation types) get the same decision for any workload:
they share a profile. :meth:`policies.Policy.decide_profiles` evaluates each
profile once and returns a :class:`ProfileVerdicts`; per-pool
:class:`Decision` objects are built only for the pools a caller asks about,
so deciding against 10,000 pools costs as much as deciding against the few
dozen profiles they form.

``verdicts.evaluation()`` is equal to ``policy.decide_all(workload)`` for the
same time and declarations: the same decisions, in bundle order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

from policies.decision import Decision, Evaluation, Reason, ReasonCode, Reliance
from policies.workload import Workload


@dataclass(frozen=True, slots=True)
class Verdict:
    """What every pool of one profile owes the workload: reasons that deny it (none: allowed),
    the declaration an allowed crossing uses, the requirement rules that applied, the
    accreditations an allowed verdict relied on, or the error that made it unevaluable."""

    reasons: tuple[Reason, ...]
    declaration: str | None
    applied: tuple[str, ...] = ()
    relied_on: tuple[Reliance, ...] = ()
    error: str | None = None  # "<Type>: <message>" when the evaluation failed (deny)

    @classmethod
    def failed(cls, exc: Exception) -> Verdict:
        """The verdict of an evaluation that raised: a deny (fail closed)."""
        return cls((), None, error=f"{type(exc).__name__}: {exc}")

    @property
    def allowed(self) -> bool:
        return self.error is None and not self.reasons


@dataclass(frozen=True, eq=False)
class ProfileVerdicts:
    """The rulebook's answer for one workload, per pool profile (see the module docstring).

    ``workload`` is the workload as decided (effective marking). ``pool_ids``,
    ``jurisdictions`` and ``profile_of`` list the bundle's pools in bundle order;
    ``verdicts[profile_of[i]]`` is pool ``i``'s verdict.
    """

    workload: Workload
    at: dt.datetime
    policy_digest: str
    policy_name: str
    policy_version: str
    pool_ids: tuple[str, ...]
    jurisdictions: tuple[str, ...]
    profile_of: tuple[int, ...]
    verdicts: tuple[Verdict, ...]

    @cached_property
    def allowed_profiles(self) -> tuple[bool, ...]:
        """Whether each profile is allowed, in profile order."""
        return tuple(v.allowed for v in self.verdicts)

    def decision(self, index: int) -> Decision:
        """The decision for the pool at ``index`` (bundle order), as ``decide_all`` makes it."""
        pool_id = self.pool_ids[index]
        verdict = self.verdicts[self.profile_of[index]]
        if verdict.error is not None:
            reason = Reason.of(ReasonCode.EVALUATION_ERROR, "evaluation", error=verdict.error,
                               pool=pool_id)
            return Decision(False, pool_id, self.jurisdictions[index], (reason,), None,
                            self.policy_digest, self.workload, self.at,
                            policy_name=self.policy_name, policy_version=self.policy_version)
        allowed = verdict.allowed
        return Decision(allowed, pool_id, self.jurisdictions[index], verdict.reasons,
                        verdict.declaration if allowed else None, self.policy_digest,
                        self.workload, self.at, verdict.applied,
                        verdict.relied_on if allowed else (), self.policy_name, self.policy_version)

    def evaluation(self) -> Evaluation:
        """Every pool's decision, in bundle order: what ``decide_all`` returns."""
        return Evaluation(self.workload, self.policy_digest,
                          [self.decision(i) for i in range(len(self.pool_ids))])
