"""One workload against every pool, evaluated once per pool *profile* (for large bundles).

Pools of one jurisdiction that hold the same accreditations with the same
expiry dates get the same decision for any workload: they share a profile.
:meth:`policies.Policy.decide_profiles` evaluates each profile once and
returns a :class:`ProfileVerdicts`; per-pool :class:`Decision` objects are
built only for the pools a caller asks about, so deciding against 10,000
pools costs as much as deciding against the few dozen profiles they form.

``verdicts.evaluation()`` is equal to ``policy.decide_all(workload)`` for the
same time and declarations: the same decisions, in bundle order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property

from policies.decision import Decision, Evaluation, Reason, ReasonCode
from policies.workload import Workload


@dataclass(frozen=True, slots=True)
class Verdict:
    """What every pool of one profile owes the workload: reasons that deny it (none: allowed),
    the declaration an allowed crossing uses, or the error that made it unevaluable."""

    reasons: tuple[Reason, ...]
    declaration: str | None
    error: str | None = None  # "<Type>: <message>" when the evaluation failed (deny)

    @property
    def allowed(self) -> bool:
        return self.error is None and not self.reasons


@dataclass(frozen=True, eq=False)
class ProfileVerdicts:
    """The rulebook's answer for one workload, per pool profile (see the module docstring).

    ``pool_ids``, ``jurisdictions`` and ``profile_of`` list the bundle's pools in
    bundle order; ``verdicts[profile_of[i]]`` is pool ``i``'s verdict.
    """

    workload: Workload
    policy_digest: str
    at: dt.datetime
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
                            self.policy_digest, self.workload, self.at)
        return Decision(verdict.allowed, pool_id, self.jurisdictions[index], verdict.reasons,
                        verdict.declaration if verdict.allowed else None, self.policy_digest,
                        self.workload, self.at)

    def evaluation(self) -> Evaluation:
        """Every pool's decision, in bundle order: what ``decide_all`` returns."""
        return Evaluation(self.workload, self.policy_digest,
                          [self.decision(i) for i in range(len(self.pool_ids))])
