"""Decisions and their reasons: what the rulebook returns, never raises.

A reason has a stable ``code`` (countable: "9 RESIDENCY, 3 MISSING_ACCREDITATION"),
the ``rule`` id that fired, and ``details`` (pool ids, markings, accreditations).
The human message is rendered from a fixed template per code, so the same
facts always read the same way.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from policies.canonical import canonical_json, sha256_hex
from policies.workload import Workload


class ReasonCode(enum.StrEnum):
    """Why a workload may not go to a pool. Callers: a deny is final for that pool
    under the current policy; only EVALUATION_ERROR suggests a bug to report."""

    CLASSIFIED_NEVER = "CLASSIFIED_NEVER"
    UNKNOWN_TENANT = "UNKNOWN_TENANT"
    UNKNOWN_POOL = "UNKNOWN_POOL"
    MARKING_NOT_ALLOWED_FOR_TENANT = "MARKING_NOT_ALLOWED_FOR_TENANT"
    UNKNOWN_MODEL = "UNKNOWN_MODEL"
    MODEL_NOT_ALLOWED = "MODEL_NOT_ALLOWED"
    MODEL_NOT_ALLOWED_FOR_MARKING = "MODEL_NOT_ALLOWED_FOR_MARKING"
    MODEL_NOT_PINNED = "MODEL_NOT_PINNED"
    MODEL_DIGEST_MISMATCH = "MODEL_DIGEST_MISMATCH"
    RESIDENCY = "RESIDENCY"
    WRONG_JURISDICTION = "WRONG_JURISDICTION"
    NO_EQUIVALENCE = "NO_EQUIVALENCE"
    MISSING_ACCREDITATION = "MISSING_ACCREDITATION"
    EXPIRED_ACCREDITATION = "EXPIRED_ACCREDITATION"
    EVALUATION_ERROR = "EVALUATION_ERROR"
    MARKING_SPILLAGE = "MARKING_SPILLAGE"


_MESSAGES: dict[str, str] = {
    "CLASSIFIED_NEVER": "marking {marking} is above restricted (level {level}); "
    "it is never processed on this platform",
    "UNKNOWN_TENANT": "tenant {tenant} is not in the policy bundle",
    "UNKNOWN_POOL": "pool {pool} is not in the policy bundle",
    "MARKING_NOT_ALLOWED_FOR_TENANT": "tenant {tenant} may not send {marking} data "
    "(allowed: {allowed})",
    "UNKNOWN_MODEL": "model {model} is not in the policy bundle",
    "MODEL_NOT_ALLOWED": "tenant {tenant} may not use model {model}",
    "MODEL_NOT_ALLOWED_FOR_MARKING": "model {model} may not process {marking} data "
    "(allowed: {allowed})",
    "MODEL_NOT_PINNED": "autarky mode: model {model} has no pinned artifact digest",
    "MODEL_DIGEST_MISMATCH": "autarky mode: model {model} artifact digest {got} "
    "does not match the pinned {pinned}",
    "RESIDENCY": "tenant {tenant} may process data only in {residency}; the pool is in "
    "{jurisdiction} and no active crisis declaration covers this workload",
    "WRONG_JURISDICTION": "{subject} must be processed in {required}; the pool is in "
    "{jurisdiction}",
    "NO_EQUIVALENCE": "declaration {declaration} covers {marking} but the bundle declares no "
    "{jurisdiction} equivalent of it; it cannot cross",
    "MISSING_ACCREDITATION": "{subject} needs {accreditation}, which the pool does not hold",
    "EXPIRED_ACCREDITATION": "{subject} needs {accreditation}; the pool held it until "
    "{valid_until}, it has expired",
    "EVALUATION_ERROR": "the policy could not be evaluated ({error}); denied (fail closed)",
    "MARKING_SPILLAGE": "the request text carries a {banner} banner (level {level}), above its "
    "declared marking {marking}; refused",
}


class Reason(NamedTuple):
    """One rule that denied, with the facts behind it and the message they render to."""

    code: str
    rule: str
    message: str
    details: Mapping[str, Any]

    @classmethod
    def of(cls, code: str, rule: str, **details: Any) -> Reason:
        """Build a reason; the message is rendered from the code's fixed template.

        >>> Reason.of("UNKNOWN_POOL", "pool-known", pool="us-east").message
        'pool us-east is not in the policy bundle'
        """
        try:
            message = _MESSAGES[code].format_map(details)
        except (KeyError, IndexError):
            message = f"{code} ({details})"
        return cls(code, rule, message, details)

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "rule": self.rule, "message": self.message}


class Decision(NamedTuple):
    """The rulebook's answer for one workload on one pool.

    ``declaration`` names the crisis declaration that allowed a border
    crossing, if one did. ``reasons`` is empty exactly when ``allowed``.
    """

    allowed: bool
    pool: str
    jurisdiction: str | None
    reasons: tuple[Reason, ...]
    declaration: str | None
    policy_digest: str
    workload: Workload
    at: dt.datetime

    @property
    def codes(self) -> list[str]:
        """Reason codes, in rule order."""
        return [reason.code for reason in self.reasons]

    @property
    def id(self) -> str:
        """A stable id: the same decision (policy, workload, pool, time) has the same id."""
        key = [self.policy_digest, self.workload.id, self.workload.summary(), self.pool,
               self.at.isoformat(), self.allowed, self.codes, self.declaration]
        return "dec_" + sha256_hex(canonical_json(key))[:24]

    def to_json(self) -> dict[str, Any]:
        """The per-pool shape of ``corridor policy explain --json``."""
        return {
            "pool": self.pool,
            "jurisdiction": self.jurisdiction,
            "allowed": self.allowed,
            "reasons": [reason.to_json() for reason in self.reasons],
            "declaration": self.declaration,
        }


class Evaluation(NamedTuple):
    """Decisions of one workload against many pools, with a tally of reason codes."""

    workload: Workload
    policy_digest: str
    decisions: Sequence[Decision]

    @property
    def allowed(self) -> list[Decision]:
        return [d for d in self.decisions if d.allowed]

    def tally(self) -> Counter[str]:
        """How many denied pools each reason code fired on (a pool counts once per code)."""
        counts: Counter[str] = Counter()
        for decision in self.decisions:
            if not decision.allowed:
                counts.update(dict.fromkeys(decision.codes, 1))
        return counts

    def summary(self) -> str:
        """E.g. ``"0/4 pools: 2 RESIDENCY, 1 MISSING_ACCREDITATION, 1 WRONG_JURISDICTION"``."""
        tally = ", ".join(f"{n} {code}" for code, n in sorted(self.tally().items(),
                                                               key=lambda kv: (-kv[1], kv[0])))
        head = f"{len(self.allowed)}/{len(self.decisions)} pools"
        return f"{head}: {tally}" if tally else head

    def to_json(self) -> dict[str, Any]:
        """The shape of ``corridor policy explain --json``."""
        return {
            "policy_digest": self.policy_digest,
            "workload": self.workload.summary(),
            "decisions": [decision.to_json() for decision in self.decisions],
        }
