"""Decisions and their reasons: what the rulebook returns, never raises.

A reason has a stable ``code`` (countable: "9 RESIDENCY, 3 MISSING_ACCREDITATION"),
the ``rule`` id that fired, and ``details`` (pool ids, markings, accreditations).
The human message is rendered from a fixed template per code, so the same
facts always read the same way.

An allowed decision also says what it relied on (:class:`Reliance`: each
required accreditation, the one the pool holds for it — itself or a declared
equivalent — and its ``valid_until``), and :meth:`Decision.facts` gives the
JSON-able record a ledger entry keeps so that :func:`policies.archive.replay`
can decide again later.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from policies.canonical import canonical_json, sha256_hex
from policies.workload import MarkingRaise, Workload


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
    # A declaration that otherwise covers the crossing does not name the workload's data flag.
    DATA_FLAG_NOT_DECLARED = "DATA_FLAG_NOT_DECLARED"
    # A national-only caveat keeps the data in one jurisdiction; no declaration moves it.
    CAVEAT_NATIONAL_ONLY = "CAVEAT_NATIONAL_ONLY"
    # Gateway, before deciding: a marking banner in the request text is above the declared
    # marking. The caller re-sends at the right marking; the request is refused as it is.
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
    "NO_EQUIVALENCE": "declaration {declaration} lets {subject} cross to {jurisdiction}, but the "
    "bundle declares no equivalent there of {missing}; it cannot cross",
    "MISSING_ACCREDITATION": "{subject} needs {accreditation}, which the pool does not hold",
    "EXPIRED_ACCREDITATION": "{subject} needs {accreditation}; the pool held it until "
    "{valid_until}, it has expired",
    "EVALUATION_ERROR": "the policy could not be evaluated ({error}); denied (fail closed)",
    "DATA_FLAG_NOT_DECLARED": "declaration {declaration} does not name {flag} data; "
    "{flag} data of tenant {tenant} cannot cross to {jurisdiction}",
    "CAVEAT_NATIONAL_ONLY": "caveat {caveat} keeps the data in {required}; the pool is in "
    "{jurisdiction} and no declaration moves national-only data",
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


def tally_of(reasons_per_pool: Iterable[Iterable[Reason]]) -> Counter[str]:
    """How many pools each reason code fired on (a pool counts once per code); the rulebook's
    reasons and the scheduler's (same shape) are counted together.

    >>> tally_of([[Reason.of("UNKNOWN_POOL", "pool-known", pool="x")], []])
    Counter({'UNKNOWN_POOL': 1})
    """
    counts: Counter[str] = Counter()
    for reasons in reasons_per_pool:
        counts.update(dict.fromkeys((str(r.code) for r in reasons), 1))
    return counts


def summary_of(allowed: int, total: int, tally: Counter[str]) -> str:
    """``"<allowed>/<total> pools: <n> <CODE>, …"``, most frequent code first.

    >>> summary_of(1, 4, Counter({"RESIDENCY": 2, "WRONG_JURISDICTION": 2, "MISSING_ACCREDITATION": 1}))
    '1/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION'
    """
    counted = ", ".join(f"{n} {code}" for code, n in sorted(tally.items(), key=lambda kv: (-kv[1], kv[0])))
    head = f"{allowed}/{total} pools"
    return f"{head}: {counted}" if counted else head


class Reliance(NamedTuple):
    """One accreditation an allowed decision relied on.

    ``accreditation`` is what rule ``rule`` requires; ``held`` is what the pool
    holds for it (the same id, or a declared equivalent — then ``equivalence``
    is True and ``crisis_only`` says whether it counts only in a crisis);
    ``valid_until`` is the last valid day of ``held`` on that pool (ISO date).
    """

    rule: str
    accreditation: str
    held: str
    valid_until: str
    equivalence: bool = False
    crisis_only: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "accreditation": self.accreditation, "held": self.held,
                "valid_until": self.valid_until,
                "equivalence": ({"accreditation": self.accreditation, "satisfied_by": self.held,
                                 "crisis_only": self.crisis_only} if self.equivalence else None)}


class Decision(NamedTuple):
    """The rulebook's answer for one workload on one pool.

    ``declaration`` names the crisis declaration that allowed a border
    crossing, if one did. ``reasons`` is empty exactly when ``allowed``.
    ``workload`` is the workload as decided: its marking is the *effective*
    one (see :attr:`marking_raised`). ``applied`` lists the requirement rules
    that applied on this pool; ``relied_on`` the accreditations an allowed
    decision relied on. ``policy_name``/``policy_version`` name the bundle.
    """

    allowed: bool
    pool: str
    jurisdiction: str | None
    reasons: tuple[Reason, ...]
    declaration: str | None
    policy_digest: str
    workload: Workload
    at: dt.datetime
    applied: tuple[str, ...] = ()
    relied_on: tuple[Reliance, ...] = ()
    policy_name: str = ""
    policy_version: str = ""

    @property
    def codes(self) -> list[str]:
        """Reason codes, in rule order."""
        return [reason.code for reason in self.reasons]

    @property
    def rules(self) -> list[str]:
        """Rule ids behind the verdict: those that fired (denied), else those that applied."""
        if self.reasons:
            return list(dict.fromkeys(reason.rule for reason in self.reasons))
        return list(self.applied)

    @property
    def effective_marking(self) -> str:
        """The marking the decision was made at (the declared one unless a minimum raised it)."""
        return self.workload.marking.id

    @property
    def marking_raised(self) -> MarkingRaise | None:
        """Why the effective marking differs from the declared one, if it does."""
        return self.workload.raised

    @property
    def id(self) -> str:
        """A stable id: the same decision (policy, workload, pool, time) has the same id."""
        key = [self.policy_digest, self.workload.id, self.workload.to_json(), self.pool,
               self.at.isoformat(), self.allowed, self.codes, self.declaration]
        return "dec_" + sha256_hex(canonical_json(key))[:24]

    def facts(self) -> dict[str, Any]:
        """What a ledger entry keeps so the decision can be replayed: JSON types only.

        Who calls it: the gateway and the scheduler, once per decision they record.
        :func:`policies.archive.replay` takes it back.
        """
        return {
            "decision_id": self.id,
            "workload_id": self.workload.id,
            "allowed": self.allowed,
            "at": self.at.isoformat(),
            "pool": self.pool,
            "jurisdiction": self.jurisdiction,
            "workload": self.workload.to_json(),
            "reasons": [{"code": r.code, "rule": r.rule, "details": dict(r.details)}
                        for r in self.reasons],
            "rules": self.rules,
            "accreditations": [reliance.to_json() for reliance in self.relied_on],
            "policy": {"name": self.policy_name, "version": self.policy_version,
                       "digest": self.policy_digest},
            "declaration": self.declaration,
        }

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
    """Decisions of one workload against many pools, with a tally of reason codes.

    ``workload`` is the workload as decided (effective marking).
    """

    workload: Workload
    policy_digest: str
    decisions: Sequence[Decision]

    @property
    def effective_marking(self) -> str:
        """The marking the decisions were made at."""
        return self.workload.marking.id

    @property
    def marking_raised(self) -> MarkingRaise | None:
        """Why the effective marking differs from the declared one, if it does."""
        return self.workload.raised

    @property
    def allowed(self) -> list[Decision]:
        return [d for d in self.decisions if d.allowed]

    @property
    def id(self) -> str:
        """The id of this evaluation as one decision (a request's route, a refusal).

        It names the workload (its ``id`` too, so two requests never share one),
        the policy, the time and the verdict per pool; the gateway answers it as
        ``X-Corridor-Decision`` and writes it into the ledger.
        """
        at = self.decisions[0].at.isoformat() if self.decisions else None
        key = [self.policy_digest, self.workload.id, self.workload.summary(), at,
               [(d.pool, d.allowed, d.codes, d.declaration) for d in self.decisions]]
        return "dec_" + sha256_hex(canonical_json(key))[:24]

    def rules(self) -> list[str]:
        """Every rule id that denied some pool, in first-seen order."""
        return list(dict.fromkeys(r.rule for d in self.decisions for r in d.reasons))

    def refusal(self, rules: Collection[str] | None = None) -> str:
        """The one text of a refusal, naming every rule: the summary, then each distinct
        (code, rule) once with its first message, e.g. ``"refused by policy (0/4 pools:
        4 CLASSIFIED_NEVER): CLASSIFIED_NEVER (classified-never): marking SECRET is …"``.
        With ``rules``, only reasons of those rule ids are named (when any fired)."""
        seen: dict[tuple[str, str], str] = {}
        for decision in self.decisions:
            for reason in decision.reasons:
                seen.setdefault((reason.code, reason.rule), reason.message)
        if rules is not None and any(rule in rules for _, rule in seen):
            seen = {key: message for key, message in seen.items() if key[1] in rules}
        named = "; ".join(f"{code} ({rule}): {message}" for (code, rule), message in seen.items())
        return f"refused by policy ({self.summary()}): {named}"

    def tally(self) -> Counter[str]:
        """How many denied pools each reason code fired on (a pool counts once per code)."""
        return tally_of(d.reasons for d in self.decisions if not d.allowed)

    def summary(self) -> str:
        """E.g. ``"0/4 pools: 2 RESIDENCY, 1 MISSING_ACCREDITATION, 1 WRONG_JURISDICTION"``."""
        return summary_of(len(self.allowed), len(self.decisions), self.tally())

    def to_json(self) -> dict[str, Any]:
        """The shape of ``corridor policy explain --json``."""
        value = {
            "policy_digest": self.policy_digest,
            "workload": self.workload.summary(),
            "decisions": [decision.to_json() for decision in self.decisions],
        }
        if self.workload.raised is not None:
            value["marking_raised"] = self.workload.raised.to_json()
        return value
