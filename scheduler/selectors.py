"""Where a replica must land, and the check of where it did: label selectors, replica bindings,
landing checks (no Ray needed; Ray's own selector syntax check is loaded when a selector is built).

:mod:`scheduler.binding` hands these to Ray and reads the landing back.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from policies.bundle import JURISDICTION_LABEL, JURISDICTIONS

from scheduler.placement import Assignment
from scheduler.spec import DeploymentSpec

if TYPE_CHECKING:
    from ray.util.placement_group import PlacementGroup


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
        from ray._private.label_utils import validate_label_selector  # Ray's own syntax rules

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
        if self.jurisdiction not in JURISDICTIONS:
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
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

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
