"""The spillage guard at the gateway: a request whose text carries a marking banner above the
marking it declares is refused before it is routed anywhere.

What is scanned: chat messages' text, completion prompts, embeddings input
(:func:`policies.spillage.request_texts`); which forms count as a banner is
:mod:`policies.spillage`'s contract. A refusal is a ``routing`` entry (``MARKING_SPILLAGE``,
rule ``marking-spillage``) naming the banner's marking, never the text, a High event on the
security feed, and a 403 ``marking_spillage`` whose message names the rule.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from policies import Workload
from policies.spillage import request_texts, spillage_reason
from scheduler.ledger import LedgerEntryDraft
from scheduler.ledger.decisions import entry_workload
from serving.feed import policy_refusal_record
from serving.gateway.errors import Forbidden
from serving.gateway.service import Gateway


async def refuse_spillage(gateway: Gateway, workload: Workload, path: str,
                          payload: Mapping[str, Any]) -> None:
    """Raise the 403 (after the ledger entry and the feed event) when a banner outranks the marking."""
    reason = spillage_reason(workload.marking, *request_texts(payload))
    if reason is None:
        return
    decision_id = "dec_" + secrets.token_hex(12)
    item = await gateway.ledger.append_async(LedgerEntryDraft(
        kind="routing", decision_id=decision_id, tenant=workload.tenant or None,
        workload=entry_workload(workload), allowed=False, reasons=[reason.code],
        policy_digest=gateway.policy.digest,
        detail={"endpoint": path, "decision": {"rules": [reason.rule], "banner": reason.details["banner"],
                                               "declared": workload.marking.id}}))
    if gateway.events is not None:
        gateway.events.emit(policy_refusal_record(item, endpoint=path))
    gateway.metrics.denials.labels(reason.code).inc()
    raise Forbidden(f"refused: {reason.code} ({reason.rule}): {reason.message}", code="marking_spillage",
                    headers={"X-Corridor-Decision": decision_id})
