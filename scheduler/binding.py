"""Binding: start a placed replica in Ray, bounded in time, and read back where it landed.

The scheduler chose a node of an admitted pool; Ray is told so through node
labels, never through a home-made mechanism:

- tensor parallel 1: one actor with ``num_gpus`` and ``label_selector`` =
  the pool's node selector plus ``ray.io/node-id`` of the chosen node;
- tensor parallel *n* > 1: a ``STRICT_PACK`` placement group of *n* one-GPU
  bundles, each with that selector as its ``bundle_label_selector``, and the
  actor in bundle 0 capturing child tasks. This is the layout vLLM's Ray
  executor accepts from ``ray.util.get_current_placement_group()``: at most
  one GPU per bundle, one GPU bundle per rank, the driver on a node of the group.

Ray leaves a selector no node satisfies pending without a word, so every wait
has a deadline; on expiry the actor is killed and the group removed
(:class:`~scheduler.exceptions.BindTimeout`). Once the actor answers, Ray is
asked (its actor table and node table, not only the actor) which node it is
on and what that node's labels are; a replica off its decision is killed
before :meth:`ReplicaActor.start` is ever called
(:class:`~scheduler.exceptions.PlacementViolation`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.placement_group import (PlacementGroup, placement_group, placement_group_table,
                                     remove_placement_group)

from scheduler.exceptions import (BindError, BindTimeout, InventoryError, PlacementViolation,
                                  ReplicaStartError)
from scheduler.selectors import (NODE_ID_LABEL, LabelSelector, Mismatch, ReplicaActor, ReplicaBinding,
                                 ViolationCode, check_landing)

__all__ = ["NODE_ID_LABEL", "Binder", "BoundReplica", "LabelSelector", "Mismatch", "ReplicaActor",
           "ReplicaBinding", "ViolationCode", "check_landing", "ray_actor_record", "ray_node_labels"]

@dataclass(slots=True)
class BoundReplica:
    """A started, verified replica actor and where Ray says it runs."""

    binding: ReplicaBinding
    actor: Any  # ray.actor.ActorHandle
    actor_id: str
    group: PlacementGroup | None
    node_id: str
    labels: Mapping[str, str]  # the node's labels from Ray's node table
    description: Mapping[str, Any]  # the actor's last describe()
    seconds: float  # from bind() to verified


def ray_actor_record(actor_id: str) -> Mapping[str, Any]:
    """Ray's actor table entry (GCS): ``State`` and ``Address.NodeID`` among others; {} if unknown."""
    from ray._private.state import actors

    try:
        return actors(actor_id=actor_id) or {}
    except Exception as exc:  # noqa: BLE001 - any Ray failure here means "cannot read"
        raise InventoryError(f"cannot read Ray's actor table: {exc}") from exc


def _free_gpus(node_id: str) -> float | None:
    """Free GPUs Ray reports for a live node; None if the node is not live or Ray cannot say."""
    from ray._private.state import available_resources_per_node

    try:
        free = available_resources_per_node().get(node_id)
    except Exception:  # noqa: BLE001 - only used to wait for Ray's accounting; give up waiting
        return None
    return None if free is None else float(free.get("GPU", 0.0))


def ray_node_labels(node_id: str) -> Mapping[str, str] | None:
    """The labels Ray's node table holds for a live node, or None if it is not alive there."""
    try:
        table = ray.nodes()
    except Exception as exc:  # noqa: BLE001 - any Ray failure here means "cannot read"
        raise InventoryError(f"cannot read Ray's node table: {exc}") from exc
    for entry in table:
        if entry["NodeID"] == node_id:
            return dict(entry.get("Labels") or {}) if entry.get("Alive") else None
    return None


class Binder:
    """Starts replica actors where placement decided and proves where they landed.

    ``timeout_s`` bounds each wait (placement group ready, actor answering,
    ``start``); ``stop_timeout_s`` how long ``stop()`` may take on release.
    """

    def __init__(self, *, timeout_s: float = 30.0, stop_timeout_s: float = 5.0) -> None:
        if timeout_s <= 0 or stop_timeout_s < 0:
            raise ValueError(f"timeouts: got timeout_s={timeout_s!r}, stop_timeout_s="
                             f"{stop_timeout_s!r}; want e.g. Binder(timeout_s=30, stop_timeout_s=5)")
        self.timeout_s = timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._remote_classes: dict[Any, Any] = {}

    def bind(self, actor_class: Any, binding: ReplicaBinding, kwargs: Mapping[str, Any], *,
             timeout_s: float | None = None) -> BoundReplica:
        """Create the actor (and its placement group), wait for it, verify it; do not start it.

        Raises :class:`BindTimeout` when Ray keeps it pending, :class:`ReplicaStartError`
        when the actor dies or ``describe`` fails, :class:`PlacementViolation` when it
        landed off its decision. In every case nothing is left running.
        """
        began = time.monotonic()
        deadline = began + (timeout_s or self.timeout_s)
        group = None
        pg_options = binding.placement_group_options()
        if pg_options is not None:
            try:
                group = placement_group(**pg_options)
            except ValueError as exc:
                raise BindError(f"Ray refused the placement group of {binding.replica}: {exc}") from exc
            ready, _ = ray.wait([group.ready()], timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                remove_placement_group(group)
                raise BindTimeout(f"placement group of replica {binding.replica}",
                                  binding.selector, timeout_s or self.timeout_s)
        remote_class = actor_class
        if not hasattr(actor_class, "remote"):
            remote_class = self._remote_classes.get(actor_class)
            if remote_class is None:
                remote_class = self._remote_classes[actor_class] = ray.remote(actor_class)
        try:
            actor = remote_class.options(**binding.actor_options(group)).remote(**kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray rejects options with various types
            self._cancel(None, group)
            raise BindError(f"Ray refused to create replica {binding.replica}: {exc}") from exc
        actor_id = actor._actor_id.hex()
        reported = self._call(actor, "describe", binding, group, deadline, timeout_s)
        if not isinstance(reported, Mapping):
            self._cancel(actor, group)
            raise ReplicaStartError(f"replica {binding.replica}: describe() returned "
                                    f"{type(reported).__name__}, want a dict with node_id, labels "
                                    f"and endpoint (see ReplicaActor)")

        try:
            record = ray_actor_record(actor_id)
            actor_node = (record.get("Address") or {}).get("NodeID") or None
            node_labels = ray_node_labels(actor_node) if actor_node else None
            bundle_nodes: list[str] = []
            if group is not None:
                bundle_nodes = list(placement_group_table(group).get("bundles_to_node_id", {}).values())
        except Exception as exc:  # noqa: BLE001 - unverified means not started
            self._cancel(actor, group)
            raise BindError(f"could not read back where replica {binding.replica} landed; it was "
                            f"killed: {exc}") from exc
        mismatches = check_landing(binding, actor_node=actor_node, reported=reported,
                                   node_labels=node_labels, bundle_nodes=bundle_nodes)
        if mismatches:
            self._cancel(actor, group)
            raise PlacementViolation(binding.replica, actor_node, mismatches,
                                     node_labels or reported.get("labels"))
        return BoundReplica(binding, actor, actor_id, group, actor_node or "", node_labels or {},
                            dict(reported), time.monotonic() - began)

    def start(self, bound: BoundReplica, *, timeout_s: float | None = None) -> None:
        """Call ``start()`` on a verified replica, bounded; on failure the replica is released."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        self._call(bound.actor, "start", bound.binding, bound.group, deadline, timeout_s)

    def describe(self, bounds: Sequence[BoundReplica], *, timeout_s: float = 2.0) -> dict[str, Any]:
        """``describe()`` of many replicas at once, bounded; replicas that did not answer are absent."""
        refs = {}
        for bound in bounds:
            try:
                refs[bound.actor.describe.remote()] = bound.actor_id
            except Exception:  # noqa: BLE001 - a dead handle simply does not answer
                continue
        if not refs:
            return {}
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s)
        out = {}
        for ref in ready:
            try:
                out[refs[ref]] = ray.get(ref)
            except Exception:  # noqa: BLE001 - died meanwhile: reported by actor_state
                continue
        return out

    def actor_state(self, actor_id: str) -> str:
        """Ray's state of the actor: ``ALIVE``, ``PENDING_CREATION``, ``RESTARTING``, ``DEAD``…"""
        return str(ray_actor_record(actor_id).get("State") or "DEAD")

    def release(self, bound: BoundReplica, *, graceful: bool = True, wait_s: float = 5.0) -> None:
        """Stop (bounded), kill, remove the replica's group; wait (bounded) for Ray to account for it.

        Waits until Ray's actor table says DEAD and the node's free GPUs went
        up by the replica's (Ray reports freed resources about 0.1 s late), so
        the next placement sees them.
        """
        if graceful and self.stop_timeout_s:
            try:
                ray.wait([bound.actor.stop.remote()], timeout=self.stop_timeout_s)
            except Exception:  # noqa: BLE001 - the actor may be gone already
                pass
        before = _free_gpus(bound.node_id) if wait_s > 0 else None
        self._cancel(bound.actor, bound.group)
        deadline = time.monotonic() + wait_s
        try:
            while time.monotonic() < deadline and self.actor_state(bound.actor_id) != "DEAD":
                time.sleep(0.02)
        except InventoryError:
            return
        if before is None:
            return
        while time.monotonic() < deadline:
            now = _free_gpus(bound.node_id)
            if now is None or now >= before + bound.binding.gpus:
                return
            time.sleep(0.02)

    def _call(self, actor: Any, method: str, binding: ReplicaBinding, group: PlacementGroup | None,
              deadline: float, timeout_s: float | None) -> Any:
        try:
            ref = getattr(actor, method).remote()
            ready, _ = ray.wait([ref], timeout=max(0.0, deadline - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - e.g. the class lacks the method
            self._cancel(actor, group)
            raise ReplicaStartError(f"replica {binding.replica}: {method}() could not be called: "
                                    f"{exc}") from exc
        if not ready:
            self._cancel(actor, group)
            what = "replica actor" if method == "describe" else f"{method}() of replica"
            raise BindTimeout(f"{what} {binding.replica}", binding.selector,
                              timeout_s or self.timeout_s)
        try:
            return ray.get(ref)
        except ray.exceptions.ActorUnschedulableError as exc:
            self._cancel(actor, group)
            raise BindError(f"Ray cannot schedule replica {binding.replica} with label selector "
                            f"{binding.selector.to_ray()} (the chosen node has left?): {exc}") from exc
        except ray.exceptions.RayError as exc:
            self._cancel(actor, group)
            raise ReplicaStartError(f"replica {binding.replica} failed in {method}(): {exc}") from exc

    @staticmethod
    def _cancel(actor: Any, group: PlacementGroup | None) -> None:
        if actor is not None:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already dead
                pass
        if group is not None:
            try:
                remove_placement_group(group)
            except Exception:  # noqa: BLE001 - already removed
                pass
