"""Ledger entries from the rulebook's decisions: the one place a decision becomes an entry.

Every ``routing``, ``placement`` and batch entry is built here, so each carries
the same facts in the same shape:

- ``decision_id``: the id the caller sees (``X-Corridor-Decision`` for a request,
  :attr:`policies.Decision.id` for a replica placed on a pool);
- ``workload``: :func:`entry_workload` of the rulebook's workload (no tenant: it
  has its own key; never any text);
- ``reasons``: the reason codes; ``policy_digest``; ``declaration`` (if one was used);
- ``detail.decision``: for a decision at a pool, :meth:`policies.Decision.facts` (the rule
  ids, the accreditations relied on with their validity, the bundle's name, version and
  digest, the declaration, the workload) plus the summary over all pools; for a refusal
  everywhere, the rule ids that fired, the summary, the workload and the time. So an
  auditor goes from the HTTP error to the decision, the rule and the bundle text, and
  ``corridor audit replay`` decides it again with the bundle kept by digest.

>>> from policies import Policy, Workload
>>> evaluation = Policy.load().decide_all(Workload.create("fr-interior", "SECRET", model="corridor-tiny"))
>>> draft = refusal_entry("routing", evaluation, detail={"endpoint": "/v1/chat/completions"})
>>> draft.reasons[0], draft.detail["decision"]["rules"][0], draft.decision_id == evaluation.id
('CLASSIFIED_NEVER', 'classified-never', True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from policies import Decision, Evaluation
from policies import Workload as RulebookWorkload
from scheduler.ledger.entry import EntryKind, LedgerEntryDraft, Workload


def entry_workload(workload: RulebookWorkload) -> Workload:
    """The ledger's description of a workload: its attributes, never its tenant or text."""
    summary = workload.summary()
    return Workload(kind=summary["kind"], model=summary["model"], marking=summary["marking"],
                    data_flags=summary["data_flags"], resources=summary["resources"])


def refusal_facts(evaluation: Evaluation) -> dict[str, Any]:
    """What a refusal everywhere keeps for replay: rule ids, summary, workload, time, policy."""
    decisions = evaluation.decisions
    first = decisions[0] if decisions else None
    return {"allowed": False, "pool": None, "rules": evaluation.rules(), "summary": evaluation.summary(),
            "workload": evaluation.workload.to_json(), "workload_id": evaluation.workload.id,
            "at": first.at.isoformat() if first else None,
            "policy": {"name": getattr(first, "policy_name", None), "version": getattr(first, "policy_version", None),
                       "digest": evaluation.policy_digest}}


def _codes(decisions: Iterable[Decision]) -> list[str]:
    return list(dict.fromkeys(r.code for d in decisions for r in d.reasons))


def decision_entry(kind: EntryKind, decision: Decision, *, decision_id: str | None = None,
                   node_id: str | None = None, allowed: bool | None = None,
                   extra_reasons: Iterable[str] = (), summary: str | None = None,
                   declaration: str | None = None,
                   detail: Mapping[str, Any] | None = None) -> LedgerEntryDraft:
    """The entry of one decision at one pool: a replica placed or evicted there, a request or a
    batch line routed there. ``allowed`` defaults to the decision's own verdict (an eviction or
    a violation records ``False`` for a decision that once allowed); ``declaration`` names the
    declaration an evicted replica had crossed under, when the new decision uses none."""
    return LedgerEntryDraft(
        kind=kind, decision_id=decision_id or decision.id, tenant=decision.workload.tenant or None,
        workload=entry_workload(decision.workload), pool=decision.pool,
        jurisdiction=decision.jurisdiction, node_id=node_id,
        allowed=decision.allowed if allowed is None else allowed,
        reasons=list(dict.fromkeys([*_codes([decision]), *extra_reasons])),
        policy_digest=decision.policy_digest, declaration=declaration or decision.declaration,
        detail={**(detail or {}), "decision": {**decision.facts(),
                                               **({"summary": summary} if summary else {})}})


def refusal_entry(kind: EntryKind, evaluation: Evaluation, *, decision_id: str | None = None,
                  extra_reasons: Iterable[str] = (), reasons: Iterable[str] | None = None,
                  detail: Mapping[str, Any] | None = None) -> LedgerEntryDraft:
    """The entry of a workload that goes nowhere: every reason code over all pools (and the
    scheduler's own, e.g. ``NO_CAPACITY``), every rule id that fired, the summary.

    ``reasons`` replaces the rulebook's codes when the rulebook allowed but nothing could
    serve (``["NO_LIVE_REPLICA"]``)."""
    workload = evaluation.workload
    codes = _codes(evaluation.decisions) if reasons is None else list(reasons)
    return LedgerEntryDraft(
        kind=kind, decision_id=decision_id or evaluation.id, tenant=workload.tenant or None,
        workload=entry_workload(workload), allowed=False,
        reasons=list(dict.fromkeys([*codes, *extra_reasons])),
        policy_digest=evaluation.policy_digest,
        detail={**(detail or {}), "decision": refusal_facts(evaluation)})
