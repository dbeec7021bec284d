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

import enum
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import ray
from ray._private.label_utils import validate_label_selector
from ray.util.placement_group import (PlacementGroup, placement_group, placement_group_table,
                                     remove_placement_group)
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from policies.bundle import JURISDICTION_LABEL

from scheduler.exceptions import (BindError, BindTimeout, InventoryError, PlacementViolation,
                                  ReplicaStartError)
from scheduler.placement import Assignment
from scheduler.spec import DeploymentSpec

#: Ray's own label naming each node; pins a replica to the node the scheduler chose.
NODE_ID_LABEL = "ray.io/node-id"


class ReplicaActor(Protocol):
    """The contract a replica actor class meets (the serving layer's vLLM replica, a test actor).

    Ray creates it with these keyword arguments::

        deployment: str            # deployment name
        replica_id: str            # e.g. "interior-chat-r1"
        model: str                 # model id of the bundle
        pool: str                  # pool it was placed on
        jurisdiction: str          # "FR" or "DE"
        tensor_parallel_size: int  # > 1: it runs in bundle 0 of a STRICT_PACK placement group
                                   # and ray.util.get_current_placement_group() returns the group
        config: dict               # DeploymentSpec.replica_config, unchanged

    The constructor must not serve or load the model: the replica is verified
    first, and killed if it landed off its decision. Methods, called by the
    scheduler in this order:

    - ``describe() -> dict``: answers at once, at any time, with
      ``node_id`` (``ray.get_runtime_context().get_node_id()``), ``labels``
      (``ray.get_runtime_context().get_node_labels()``) and ``endpoint``
      (base URL once serving, else ``None``);
    - ``start() -> None``: begin serving (e.g. launch the vLLM server); return
      promptly, readiness shows later as ``endpoint`` in ``describe()``;
    - ``stop() -> None``: stop serving and end child processes; called, with
      a bounded wait, before the actor is killed.

    The actor is created with ``max_restarts=0``: a lost replica is placed
    again by the scheduler, under the rulebook, never restarted blindly by Ray.
    """

    def describe(self) -> dict[str, Any]: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class LabelSelector(Mapping[str, str]):
    """Node labels a replica requires, exact values only. Stability: public, alpha.

    Checked in the constructor with Ray's own label syntax rules.

    >>> LabelSelector({"corridor.eu/pool": "fr-paris", "corridor.eu/jurisdiction": "FR"})
    LabelSelector({'corridor.eu/jurisdiction': 'FR', 'corridor.eu/pool': 'fr-paris'})
    >>> LabelSelector({"corridor.eu/pool": "fr-paris"}).matches({"corridor.eu/pool": "fr-paris", "x": "1"})
    True
    """

    __slots__ = ("_labels",)

    def __init__(self, labels: Mapping[str, str]) -> None:
        example = "LabelSelector({'corridor.eu/pool': 'fr-paris', 'corridor.eu/jurisdiction': 'FR'})"
        if not isinstance(labels, Mapping) or not labels:
            raise ValueError(f"label selector: got {labels!r}, want a non-empty mapping, e.g. {example}")
        for key, value in labels.items():
            if not isinstance(key, str) or not isinstance(value, str) or not value:
                raise ValueError(f"label selector: got {key!r}: {value!r}, want non-empty strings, "
                                 f"e.g. {example}")
            if value.startswith("!") or value.endswith(")"):
                raise ValueError(f"label selector: got operator value {value!r} for {key!r}, want an "
                                 f"exact label value, e.g. {example}")
        problem = validate_label_selector(dict(labels))
        if problem:
            raise ValueError(f"label selector {dict(labels)}: {problem}")
        self._labels = dict(sorted(labels.items()))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` carry every label of the selector with the same value."""
        return all(labels.get(key) == value for key, value in self._labels.items())

    def to_ray(self) -> dict[str, str]:
        """The plain dict Ray's ``label_selector`` / ``bundle_label_selector`` take."""
        return dict(self._labels)

    def __getitem__(self, key: str) -> str:
        return self._labels[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LabelSelector):
            return self._labels == other._labels
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._labels.items()))

    def __repr__(self) -> str:
        return f"LabelSelector({self._labels!r})"


@dataclass(frozen=True, slots=True)
class ReplicaBinding:
    """How one replica is started in Ray: where, and with which resources. Stability: public, alpha.

    ``expected`` is what the decision allows (the pool's node selector plus the
    chosen node), ``selector`` what Ray is asked for; they are the same unless
    something between decision and Ray changed it, which is exactly what the
    read-back catches.

    >>> b = ReplicaBinding("chat-r1", "fr-paris", "FR", {"corridor.eu/pool": "fr-paris"}, gpus=2,
    ...                    tensor_parallel_size=2)
    >>> b.placement_group_options()["strategy"], b.placement_group_options()["bundles"]
    ('STRICT_PACK', [{'GPU': 1.0}, {'GPU': 1.0}])
    """

    replica: str
    pool: str
    jurisdiction: str
    expected: LabelSelector
    selector: LabelSelector = field(default=None)  # type: ignore[assignment]
    gpus: int = 1
    tensor_parallel_size: int = 1
    cpus: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.expected, LabelSelector):
            object.__setattr__(self, "expected", LabelSelector(self.expected))
        if self.selector is None:
            object.__setattr__(self, "selector", self.expected)
        elif not isinstance(self.selector, LabelSelector):
            object.__setattr__(self, "selector", LabelSelector(self.selector))
        if self.jurisdiction not in ("FR", "DE"):
            raise ValueError(f"jurisdiction: got {self.jurisdiction!r}, want 'FR' or 'DE'")
        if isinstance(self.gpus, bool) or not isinstance(self.gpus, int) or self.gpus < 1:
            raise ValueError(f"gpus: got {self.gpus!r}, want an integer >= 1, e.g. gpus=1")
        tp = self.tensor_parallel_size
        if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1 or (tp > 1 and tp != self.gpus):
            raise ValueError(f"tensor_parallel_size: got {tp!r} with gpus={self.gpus}, want 1, or "
                             f"equal to gpus (one GPU per bundle), e.g. gpus=2, tensor_parallel_size=2")
        if self.cpus < 0:
            raise ValueError(f"cpus: got {self.cpus!r}, want a number >= 0, e.g. cpus=0.5")

    @classmethod
    def for_assignment(cls, replica: str, assignment: Assignment, spec: DeploymentSpec) -> ReplicaBinding:
        """The binding of a placed replica: the pool's selector pinned to the chosen node."""
        expected = LabelSelector({**assignment.node_selector, NODE_ID_LABEL: assignment.node_id})
        return cls(replica, assignment.pool, assignment.jurisdiction, expected, expected,
                   spec.gpus_per_replica, spec.tensor_parallel_size, spec.cpus_per_replica)

    def placement_group_options(self) -> dict[str, Any] | None:
        """Keyword arguments of ``ray.util.placement_group`` (None without tensor parallelism)."""
        if self.tensor_parallel_size == 1:
            return None
        bundles: list[dict[str, float]] = [{"GPU": 1.0} for _ in range(self.tensor_parallel_size)]
        if self.cpus:
            bundles[0]["CPU"] = float(self.cpus)
        return {"bundles": bundles, "strategy": "STRICT_PACK",
                "bundle_label_selector": [self.selector.to_ray() for _ in bundles],
                "name": f"corridor:{self.replica}"}

    def actor_options(self, group: PlacementGroup | None = None) -> dict[str, Any]:
        """Keyword arguments of ``ActorClass.options`` (``group`` required with tensor parallelism)."""
        # Named after the replica so operators (and tests) can find it: ray.get_actor("corridor:<id>").
        options: dict[str, Any] = {"num_cpus": self.cpus, "max_restarts": 0,
                                   "name": f"corridor:{self.replica}"}
        if self.tensor_parallel_size == 1:
            options.update(num_gpus=self.gpus, label_selector=self.selector.to_ray())
            return options
        if group is None:
            raise ValueError(f"replica {self.replica}: tensor_parallel_size="
                             f"{self.tensor_parallel_size} needs its placement group; pass "
                             f"actor_options(ray.util.placement_group(**placement_group_options()))")
        options.update(num_gpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(
            group, placement_group_bundle_index=0, placement_group_capture_child_tasks=True))
        return options


class ViolationCode(enum.StrEnum):
    """What the read-back found wrong. Callers: the replica was killed; the ledger has a
    ``violation`` entry; placement may be retried, the node deserves an operator's look."""

    NODE_UNKNOWN = "NODE_UNKNOWN"  # Ray's node table has no live node where the actor runs
    NODE_REPORT_MISMATCH = "NODE_REPORT_MISMATCH"  # actor and Ray's actor table name different nodes
    LABEL_MISMATCH = "LABEL_MISMATCH"  # the node's labels (per Ray) are not the decision's
    JURISDICTION_MISMATCH = "JURISDICTION_MISMATCH"  # the node is labelled another jurisdiction
    REPORTED_LABEL_MISMATCH = "REPORTED_LABEL_MISMATCH"  # actor's labels differ from Ray's node table
    BUNDLE_NODE_MISMATCH = "BUNDLE_NODE_MISMATCH"  # a placement-group bundle sits on another node


class Mismatch(NamedTuple):
    """One failed read-back check."""

    code: ViolationCode
    message: str


def check_landing(binding: ReplicaBinding, *, actor_node: str | None, reported: Mapping[str, Any],
                  node_labels: Mapping[str, str] | None,
                  bundle_nodes: Sequence[str] = ()) -> list[Mismatch]:
    """Compare where Ray put a replica with its decision; an empty list means it is where decided.

    ``actor_node`` and ``node_labels`` come from Ray (actor table, node table;
    ``node_labels`` None if the node is not alive there), ``reported`` from
    the actor's ``describe()``, ``bundle_nodes`` from the placement-group table.
    """
    out: list[Mismatch] = []
    if node_labels is None:
        out.append(Mismatch(ViolationCode.NODE_UNKNOWN,
                            f"Ray has no live node {actor_node} for replica {binding.replica}"))
        node_labels = {}
    if reported.get("node_id") != actor_node:
        out.append(Mismatch(ViolationCode.NODE_REPORT_MISMATCH,
                            f"the actor reports node {reported.get('node_id')}, Ray's actor table "
                            f"says {actor_node}"))
    wrong = {k: node_labels.get(k) for k, v in binding.expected.items() if node_labels.get(k) != v}
    if wrong and node_labels:
        out.append(Mismatch(ViolationCode.LABEL_MISMATCH,
                            f"decided {dict(binding.expected)}, the node has {wrong}"))
    got = node_labels.get(JURISDICTION_LABEL)
    if got is not None and got != binding.jurisdiction:
        out.append(Mismatch(ViolationCode.JURISDICTION_MISMATCH,
                            f"decided {binding.jurisdiction}, the node is labelled {got}"))
    seen = reported.get("labels") or {}
    differ = sorted(k for k in binding.expected if k in node_labels and seen.get(k) != node_labels[k])
    if differ:
        out.append(Mismatch(ViolationCode.REPORTED_LABEL_MISMATCH,
                            f"the actor sees {[seen.get(k) for k in differ]} for {differ}, Ray's "
                            f"node table {[node_labels[k] for k in differ]}"))
    strays = sorted({n for n in bundle_nodes if n != actor_node})
    if strays:
        out.append(Mismatch(ViolationCode.BUNDLE_NODE_MISMATCH,
                            f"placement-group bundles on {strays}, the actor on {actor_node}"))
    return out


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
