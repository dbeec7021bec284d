"""Pool inventory: reads the Ray cluster's nodes and keeps the latest snapshot of the pools.

:class:`Inventory` reads Ray (:func:`read_ray_nodes`) on a period and on demand,
builds a :class:`~scheduler.snapshot.Snapshot` (pure matching of nodes to pools,
in :mod:`scheduler.snapshot`) and writes each newly quarantined node to the
ledger once as a ``security`` entry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Protocol

from policies import Policy

from scheduler.current_policy import CurrentPolicy, current_of
from scheduler.exceptions import InventoryError
from scheduler.ledger import LedgerEntryDraft
from scheduler.periodic import Periodic
from scheduler.snapshot import (Node, NodeTable, PoolState, Quarantine, QuarantineCode, RayNode,
                                Snapshot, build_snapshot)

log = logging.getLogger(__name__)

__all__ = ["Inventory", "LedgerWriter", "Node", "NodeTable", "PoolState", "Quarantine", "QuarantineCode",
           "RayNode", "Snapshot", "build_snapshot", "read_ray_nodes"]


class LedgerWriter(Protocol):
    """What the scheduler needs of the ledger; :class:`scheduler.ledger.Ledger` provides it."""

    def append_many(self, drafts: Iterable[Any]) -> list[dict[str, Any]]:
        """Append entries in one transaction; return their items once durable."""
        ...


def read_ray_nodes() -> list[RayNode]:
    """Ask Ray (GCS) for every node: labels, liveness, total and free GPUs.

    Ray keeps dead nodes in its node table; free resources are reported for
    live nodes only and lag real use by up to about a second.
    """
    import ray
    from ray._private.state import available_resources_per_node

    if not ray.is_initialized():
        raise InventoryError("Ray is not connected: call ray.init(address=...) before reading "
                             "the inventory")
    try:
        table = ray.nodes()
        free = available_resources_per_node()
    except Exception as exc:  # noqa: BLE001 - any Ray failure here means "cannot read"
        raise InventoryError(f"cannot read the Ray node table: {exc}") from exc
    out = []
    for entry in table:
        node_id = entry["NodeID"]
        labels = {k: str(v) for k, v in (entry.get("Labels") or {}).items()}
        total = float((entry.get("Resources") or {}).get("GPU", 0.0))
        alive = bool(entry.get("Alive"))
        out.append(RayNode(node_id, alive, labels, total,
                           float(free.get(node_id, {}).get("GPU", 0.0)) if alive else 0.0))
    return out


class Inventory:
    """The bundle's pools as the Ray cluster shows them; thread-safe.

    :meth:`refresh` reads Ray now (callers: placement before each cycle, the
    healing pass); :meth:`start` also refreshes every ``period_s`` in a
    daemon thread. Each newly quarantined node is written to ``ledger`` as a
    ``security`` entry exactly once per inventory; a failed write is retried
    on the next refresh, and the node stays quarantined either way. Given a
    :class:`~scheduler.current_policy.CurrentPolicy`, pools come from the policy in force.
    """

    def __init__(self, policy: Policy | CurrentPolicy, *, ledger: LedgerWriter | None = None,
                 period_s: float = 5.0, site: str | None = None) -> None:
        if period_s <= 0:
            raise ValueError(f"period_s: got {period_s!r}, want a positive number of seconds, e.g. 5.0")
        self.current = current_of(policy)
        self.site = site  # a site's own cluster: nodes of the other jurisdiction are quarantined
        self.ledger = ledger
        self.period_s = period_s
        self.refreshes = 0
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None
        self._reported: set[str] = set()
        self._refresher = Periodic(self.refresh, period_s, "corridor-inventory", log,
                                   "inventory refresh failed")

    @property
    def policy(self) -> Policy:
        """The policy in force."""
        return self.current.policy

    def refresh(self, policy: Policy | None = None) -> Snapshot:
        """Read Ray now, rebuild the snapshot against ``policy``'s pools (default: the policy
        in force), report new quarantines; return the snapshot."""
        policy = policy or self.current.policy
        snapshot = build_snapshot(policy.bundle.pools, read_ray_nodes(), site=self.site)
        with self._lock:
            self._snapshot = snapshot
            self.refreshes += 1
            fresh = [q for q in snapshot.quarantined.values() if q.node_id not in self._reported]
            if fresh:
                self._report(fresh, policy)
        return snapshot

    def snapshot(self, max_age_s: float | None = None) -> Snapshot:
        """The latest snapshot; refreshed first if none exists or it is older than ``max_age_s``."""
        current = self._snapshot
        if current is None or (max_age_s is not None and time.time() - current.at > max_age_s):
            return self.refresh()
        return current

    def start(self) -> Inventory:
        """Refresh every ``period_s`` in a daemon thread until :meth:`stop`."""
        self._refresher.start()
        return self

    def stop(self) -> None:
        """Stop the refresh thread (waits for a refresh in progress)."""
        self._refresher.stop()

    def __enter__(self) -> Inventory:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _report(self, fresh: list[Quarantine], policy: Policy | None = None) -> None:
        policy = policy or self.current.policy
        log.warning("quarantined nodes: %s", "; ".join(q.message for q in fresh))
        if self.ledger is None:
            self._reported.update(q.node_id for q in fresh)
            return
        jurisdictions = {pool.id: pool.jurisdiction for pool in policy.bundle.pools}
        drafts = [LedgerEntryDraft(
            kind="security", node_id=q.node_id, pool=q.pool, jurisdiction=jurisdictions.get(q.pool),
            allowed=False, reasons=[str(q.code)],
            policy_digest=policy.digest,
            detail={"action": "quarantine", "message": q.message, "labels": dict(q.labels),
                    "claimed_pool": q.pool}) for q in fresh]
        try:
            self.ledger.append_many(drafts)
        except Exception:  # noqa: BLE001 - retried on the next refresh; the node stays unused
            log.exception("could not write security entries for quarantined nodes")
            return
        self._reported.update(q.node_id for q in fresh)
