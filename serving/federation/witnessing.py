"""This site witnesses the peer's ledger: it countersigns each new signed tree head of the peer
after checking its signature and its consistency with the last head it witnessed.

A cycle (every ``witness_period_s``): sign this site's own head if the log grew (so heads are
signed at most that often while it grows), fetch the peer's latest head and checkpoint, and a
consistency proof from the last witnessed size; :func:`scheduler.ledger.witness.witness` checks
and cosigns; a ``witness`` entry goes into this site's ledger (a head one entry further, which
in a quiet corridor is the peer's record of this site, at most every ``witness_record_s``: else
the two records would grow each other's logs forever); the cosigned checkpoint goes back
to the peer, which serves it at ``/audit/checkpoint``. A head that fails its signature or
consistency check, or a second head of one size, is a Critical ``peer_ledger_inconsistent``
event and stops forwarding to the peer until an operator clears it.

State lives in ``witness.json`` beside the ledger: the last witnessed head, the recent
``/audit/witness`` items, and the cosigned checkpoints the peer sent for this site's heads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scheduler.ledger import Ledger, LedgerEntryDraft
from scheduler.ledger.checkpoint import sign_tree_head_checkpoint
from scheduler.ledger.exceptions import WitnessError
from scheduler.ledger.witness import WitnessState, witness
from serving.federation.link import PeerRefused, PeerUnavailable
from serving.federation.runtime import Federation

log = logging.getLogger(__name__)

WITNESS_FILENAME = "witness.json"
_KEEP_ITEMS = 1000


class Witness:
    """The witness of one site over its peer; its loop runs in the gateway's event loop."""

    def __init__(self, federation: Federation, ledger: Ledger, signing_key: Ed25519PrivateKey,
                 path: Path, *, report: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.federation, self.ledger, self.key, self.path = federation, ledger, signing_key, path
        self.report = report  # (message, detail) of a Critical peer_ledger_inconsistent event
        self.last: WitnessState | None = None
        self.items: list[dict[str, Any]] = []
        self.cosigned: dict[str, str] = {}  # str(tree_size) -> this site's checkpoint cosigned by the peer
        self.recorded_at: float | None = None  # monotonic time of the last ``witness`` ledger entry
        if path.exists():
            document = json.loads(path.read_text("utf-8"))
            self.last = WitnessState.from_json(document["last"]) if document.get("last") else None
            self.items = list(document.get("items", []))
            self.cosigned = dict(document.get("cosigned", {}))

    # -- this site's own heads --------------------------------------------------

    def own_head(self) -> dict[str, Any]:
        """This site's latest signed head and its checkpoint note (what the peer fetches)."""
        head = self.ledger.latest_tree_head()
        note = sign_tree_head_checkpoint(self.federation.site, head, self.key)
        return {"tree_head": head, "checkpoint": note}

    def checkpoint(self) -> str:
        """This site's newest checkpoint the peer has cosigned (both signature lines), else its latest
        own signed one: the log grows between witness cycles, so the witnessed checkpoint is
        usually a few entries behind the newest head."""
        if self.cosigned:
            return self.cosigned[max(self.cosigned, key=int)]
        return sign_tree_head_checkpoint(self.federation.site, self.ledger.latest_tree_head(), self.key)

    def receive_cosignature(self, item: dict[str, Any]) -> None:
        """The peer cosigned one of this site's heads; keep its cosigned checkpoint."""
        head = item.get("tree_head") or {}
        size = head.get("tree_size")
        if not isinstance(size, int) or not isinstance(item.get("checkpoint"), str):
            raise ValueError("a cosignature item needs tree_head.tree_size and checkpoint")
        self.cosigned[str(size)] = item["checkpoint"]
        self.cosigned = dict(sorted(self.cosigned.items(), key=lambda kv: -int(kv[0]))[:16])  # newest
        self._save()

    # -- witnessing the peer ----------------------------------------------------

    async def loop(self) -> None:
        while True:
            try:
                await self.cycle()
            except Exception:  # noqa: BLE001 - the next cycle tries again
                log.exception("witness cycle failed")
            await asyncio.sleep(self.federation.config.witness_period_s)

    async def cycle(self) -> dict[str, Any] | None:
        """One cycle; returns the new ``/audit/witness`` item, or None when nothing new."""
        await asyncio.to_thread(self.ledger.latest_tree_head)  # sign our own head if we grew
        federation = self.federation
        peer_key = federation.state.public_key
        if peer_key is None or federation.state.halted:
            return None  # halted: reported once; an operator clears it after investigating
        try:
            served = await federation.link.get_json("/peer/v1/tree-head")
            head = served["tree_head"]
            last = self.last
            if last is not None and head["tree_size"] == last.tree_size and head["root_hash"] == last.root_hash:
                return None
            proof = None
            if last is not None and 0 < last.tree_size < head["tree_size"]:
                proof = (await federation.link.get_json("/peer/v1/proof/consistency", {
                    "first": last.tree_size, "second": head["tree_size"]}))["consistency_path"]
        except (PeerUnavailable, PeerRefused) as exc:
            log.info("witness: peer site %s not reachable: %s", federation.peer, exc)
            return None
        try:
            witnessed = witness(site=federation.site, signing_key=self.key, peer_site=federation.peer,
                                peer_key=peer_key, last=last, tree_head=head, consistency_proof=proof,
                                checkpoint=served.get("checkpoint"))
        except WitnessError as exc:
            await self._inconsistent(exc, head)
            return None
        item = witnessed.item()
        if self._worth_recording(last, head):
            await self.ledger.append_async(LedgerEntryDraft(
                kind="witness", policy_digest=federation.own_digest,
                detail={"site": federation.peer, "tree_size": head["tree_size"], "root_hash": head["root_hash"],
                        "peer_timestamp": head["timestamp"], "cosignature": item["cosignature"]}))
            self.recorded_at = time.monotonic()
        self.last = witnessed.state
        self.items = [*self.items, item][-_KEEP_ITEMS:]
        await asyncio.to_thread(self._save)
        try:
            await federation.link.post_json("/peer/v1/cosignatures", item)
        except (PeerUnavailable, PeerRefused) as exc:
            log.info("witness: could not hand the cosignature back to %s: %s", federation.peer, exc)
        return item

    def _worth_recording(self, last: WitnessState | None, head: dict[str, Any]) -> bool:
        """Record every head that grew by more than one entry; a one-entry step at most every
        ``witness_record_s`` (that step is, in a quiet corridor, the peer recording this site)."""
        if last is None or self.recorded_at is None or head["tree_size"] - last.tree_size > 1:
            return True
        return time.monotonic() - self.recorded_at >= self.federation.config.witness_record_s

    async def _inconsistent(self, exc: WitnessError, head: dict[str, Any]) -> None:
        federation = self.federation
        message = f"the ledger of site {federation.peer} is inconsistent: {exc}"
        log.critical(message)
        detail = {"event": "peer_ledger_inconsistent", "site": federation.peer, "check": type(exc).__name__,
                  "message": str(exc), "tree_size": head.get("tree_size"), "root_hash": head.get("root_hash")}
        await self.ledger.append_async(LedgerEntryDraft(
            kind="security", allowed=False, reasons=["PEER_LEDGER_INCONSISTENT"],
            policy_digest=federation.own_digest, detail=detail))
        federation.state.halted = message  # on record first, then forwarding stops
        if self.report is not None:
            self.report(message, detail)

    def page(self, after: int | None, limit: int) -> dict[str, Any]:
        """``/audit/witness``: items after the ``after``-th, at most ``limit``."""
        start = 0 if after is None else after + 1
        data = self.items[start:start + limit]
        return {"data": data, "has_more": start + limit < len(self.items)}

    def _save(self) -> None:
        body = json.dumps({"last": self.last.to_json() if self.last else None, "items": self.items,
                           "cosigned": self.cosigned}, ensure_ascii=False)
        # One temporary file per writer: the cycle and a received cosignature may save at once.
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(body)
        os.replace(temporary, self.path)
