"""Placement: where a deployment's replicas may go and where they should go. Pure: no Ray.

One placement is one *cycle*:

1. **Admission** (:meth:`Placer.admit`): the rulebook once per audience over
   every pool of the bundle, evaluated once per pool profile
   (:meth:`policies.Policy.decide_profiles`). A replica is shared by all its
   audiences, so a pool is admitted only when every audience's decision allows it.
2. **Filter**: each :class:`Filter` removes pools and can say why for each one
   it removed (:class:`Status`: code, rule, fixed message, facts). In order:
   ``rulebook`` (the audiences' reasons), ``pin`` (the request's own pool or
   jurisdiction), ``capacity`` (a live, non-quarantined node with the GPUs
   free). Filters that need no inventory run once per cycle; if they leave
   nothing, Ray is never asked.
3. **Score**: each :class:`Scorer` gives every feasible node a score in
   ``[0, 1]``; the weighted sum ranks them. By default, weights 16, 4 and 1
   make each scorer outrank the next: ``home-jurisdiction`` (the audiences'
   home), ``spread`` (nodes and sites without a replica of this deployment),
   ``pack`` (fill partly used nodes first).

Each replica is one round of filter → score on what earlier rounds reserved.
Filters and scorers work on whole columns (a boolean per pool, a value per
node row of :class:`~scheduler.inventory.NodeTable`), so a cycle costs
milliseconds even against 10,000 pools; reasons are rendered only when asked
for. A "no" is always a returned status, never an exception; only
:class:`~scheduler.deployments.Deployments` turns "nowhere" into a
:class:`~scheduler.exceptions.PlacementError`. Nothing ever falls back to a
pool the filters removed.

One module because a placement cycle is one thing: the filter and scorer
protocols, their default plugins and the placer that runs them over the same
per-cycle arrays are read together.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from policies import Decision, Declaration, Evaluation, Policy, Reason
from policies.profiles import ProfileVerdicts
from policies.decision import summary_of, tally_of

from scheduler.snapshot import NodeTable, Snapshot
from scheduler.spec import DeploymentSpec


class SchedulerCode(enum.StrEnum):
    """The scheduler's own reasons a pool is not a candidate, beside the rulebook's codes."""

    PINNED_ELSEWHERE = "PINNED_ELSEWHERE"  # final for this request: it pins another pool or jurisdiction
    NO_LIVE_NODES = "NO_LIVE_NODES"  # retry when a node of the pool (re)joins the Ray cluster
    QUARANTINED = "QUARANTINED"  # operator: the pool's only nodes are quarantined; fix their labels
    NO_CAPACITY = "NO_CAPACITY"  # retry when GPUs free up or nodes join; nothing spills elsewhere


_MESSAGES = {
    "PINNED_ELSEWHERE": "deployment {deployment} is pinned to {pin}; pool {pool} is not",
    "NO_LIVE_NODES": "pool {pool} has no live node in the Ray cluster ({dead} dead)",
    "QUARANTINED": "pool {pool} has no usable node; its nodes {nodes} are quarantined",
    "NO_CAPACITY": "pool {pool} has no node with {need:g} free GPUs (at most {most:g} free on one node)",
}


class Status(Reason):
    """Why a filter removed a pool: a :class:`policies.Reason` whose code is a
    :class:`SchedulerCode`, so the rulebook's reasons and the scheduler's are counted together."""

    __slots__ = ()

    @classmethod
    def of(cls, code: SchedulerCode, rule: str, **details: Any) -> Status:  # type: ignore[override]
        """Build a status; the message is rendered from the code's fixed template.

        >>> Status.of(SchedulerCode.NO_LIVE_NODES, "capacity", pool="de-berlin", dead=1).message
        'pool de-berlin has no live node in the Ray cluster (1 dead)'
        """
        return cls(str(code), rule, _MESSAGES[code].format(**details), details)


@dataclass(frozen=True, eq=False)
class Admission:
    """The rulebook's answer for one deployment: one evaluation per audience over every pool.

    Built by :meth:`Placer.admit` once per cycle, never per node, from the
    rulebook's verdicts per pool profile (:meth:`policies.Policy.decide_profiles`):
    its cost grows with the profiles, not the pools. Per-pool decisions are built
    only when asked for. ``allowed_mask[i]`` says whether every audience may use
    pool ``pool_ids[i]``.
    """

    spec: DeploymentSpec
    at: dt.datetime
    policy_digest: str
    verdicts: tuple[ProfileVerdicts, ...]  # one per audience
    pool_ids: tuple[str, ...]
    index: Mapping[str, int]
    allowed_mask: np.ndarray
    homes: Mapping[str, float]  # jurisdiction -> share of audiences whose tenant lives there

    @cached_property
    def evaluations(self) -> tuple[Evaluation, ...]:
        """One evaluation per audience, decisions in pool order (built on first use)."""
        return tuple(v.evaluation() for v in self.verdicts)

    @property
    def allowed(self) -> list[str]:
        """Pools the rulebook allows for every audience, in bundle order."""
        return [self.pool_ids[i] for i in np.flatnonzero(self.allowed_mask)]

    def allows(self, pool: str) -> bool:
        """True when every audience may use ``pool`` (False for a pool the bundle lacks)."""
        i = self.index.get(pool)
        return i is not None and bool(self.allowed_mask[i])

    def decisions_for(self, pool: str) -> tuple[Decision, ...]:
        """One decision per audience on ``pool``, in audience order."""
        i = self.index[pool]
        return tuple(v.decision(i) for v in self.verdicts)

    def reasons(self, pool: str) -> tuple[Any, ...]:
        """Every reason any audience was refused ``pool`` for (empty when allowed)."""
        return tuple(r for d in self.decisions_for(pool) for r in d.reasons)


@dataclass(eq=False)
class Cycle:
    """What filters and scorers see: the request, its admission, the inventory, this round's state.

    ``free`` is the GPUs free per node row this round: Ray's count, capped by
    what this scheduler's live replicas hold there (Ray's count lags), minus
    what earlier rounds reserved. ``on_node``/``on_site`` count replicas of
    this deployment per row and per site. ``notes`` lets a filter keep what
    it needs to explain itself later.
    """

    spec: DeploymentSpec
    admission: Admission
    jurisdictions: np.ndarray  # per pool, in pool order
    snapshot: Snapshot | None = None
    table: NodeTable | None = None
    free: np.ndarray | None = None
    on_node: np.ndarray | None = None
    on_site: np.ndarray | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def need(self) -> int:
        """GPUs one replica needs on one node (tensor-parallel ranks are packed on one node)."""
        return self.spec.gpus_per_replica

    def attach(self, snapshot: Snapshot, held: Mapping[str, float], existing: Iterable[str]) -> None:
        """Bring in the inventory, once a pool survived the filters that need none."""
        table = snapshot.table
        if table is None or table.pool_ids != self.admission.pool_ids:
            raise ValueError("snapshot: its pools are not the policy's, in the policy's order; "
                             "build it with build_snapshot(policy.bundle.pools, nodes)")
        self.snapshot, self.table = snapshot, table
        self.free = table.gpus_free.copy()
        for node_id, gpus in held.items():
            row = table.index.get(node_id)
            if row is not None:
                self.free[row] = min(self.free[row], table.gpus_total[row] - gpus)
        self.on_node = np.zeros(len(table.nodes), dtype=np.int64)
        self.on_site = np.zeros(len(table.sites), dtype=np.int64)
        for node_id in existing:
            row = table.index.get(node_id)
            if row is not None:
                self.on_node[row] += 1
                self.on_site[table.site[row]] += 1

    def reserve(self, row: int) -> None:
        self.free[row] -= self.need
        self.on_node[row] += 1
        self.on_site[self.table.site[row]] += 1


class Filter(Protocol):
    """Removes the pools a replica may not or cannot go to.

    ``filter`` gets the pools still in the running (a boolean per pool, pool
    order) and returns those that pass; it is one vectorized step, never an
    exception for a "no". ``why`` returns the statuses of a pool it removed,
    asked only to explain (tallies, ledger, errors). ``needs_inventory``
    False: it reads only the request and the admission, runs once per cycle,
    and may run before Ray is asked.
    """

    name: str
    needs_inventory: bool

    def filter(self, cycle: Cycle, keep: np.ndarray) -> np.ndarray: ...

    def why(self, cycle: Cycle, pool: int) -> tuple[Any, ...]: ...


class Scorer(Protocol):
    """Ranks feasible nodes: a score in ``[0, 1]`` per candidate row, higher is better, times ``weight``."""

    name: str
    weight: float

    def score(self, cycle: Cycle, rows: np.ndarray) -> np.ndarray: ...


class RulebookFilter:
    """Keeps the pools the rulebook allows for every audience; the others carry its reasons."""

    name = "rulebook"
    needs_inventory = False

    def filter(self, cycle: Cycle, keep: np.ndarray) -> np.ndarray:
        return keep & cycle.admission.allowed_mask

    def why(self, cycle: Cycle, pool: int) -> tuple[Any, ...]:
        return cycle.admission.reasons(cycle.admission.pool_ids[pool])


class PinFilter:
    """Keeps only the pool or jurisdiction the request pins itself to, if it pins any."""

    name = "pin"
    needs_inventory = False

    def filter(self, cycle: Cycle, keep: np.ndarray) -> np.ndarray:
        spec = cycle.spec
        if spec.jurisdiction is not None:
            keep = keep & (cycle.jurisdictions == spec.jurisdiction)
        if spec.pool is not None:
            only = np.zeros_like(keep)
            index = cycle.admission.index.get(spec.pool)
            if index is not None:
                only[index] = True
            keep = keep & only
        return keep

    def why(self, cycle: Cycle, pool: int) -> tuple[Any, ...]:
        spec = cycle.spec
        pin = " and ".join(p for p in (spec.pool, spec.jurisdiction) if p is not None)
        return (Status.of(SchedulerCode.PINNED_ELSEWHERE, self.name, deployment=spec.name, pin=pin,
                          pool=cycle.admission.pool_ids[pool]),)


class CapacityFilter:
    """Keeps pools with a live, non-quarantined node that has the replica's GPUs free."""

    name = "capacity"
    needs_inventory = True

    def filter(self, cycle: Cycle, keep: np.ndarray) -> np.ndarray:
        most = cycle.table.per_pool_max(cycle.free)
        cycle.notes[self.name] = most
        return keep & (most >= cycle.need)

    def why(self, cycle: Cycle, pool: int) -> tuple[Any, ...]:
        state = cycle.snapshot.pools[cycle.admission.pool_ids[pool]]
        if not state.nodes:
            if state.quarantined:
                return (Status.of(SchedulerCode.QUARANTINED, self.name, pool=state.pool.id,
                                  nodes=", ".join(state.quarantined)),)
            return (Status.of(SchedulerCode.NO_LIVE_NODES, self.name, pool=state.pool.id,
                              dead=len(state.dead)),)
        most = float(cycle.notes[self.name][pool])
        return (Status.of(SchedulerCode.NO_CAPACITY, self.name, pool=state.pool.id, need=cycle.need,
                          most=max(most, 0.0)),)


class HomeJurisdiction:
    """Prefers nodes in the jurisdiction its audiences' tenants call home (share of audiences)."""

    name = "home-jurisdiction"

    def __init__(self, weight: float = 16.0) -> None:
        self.weight = weight

    def score(self, cycle: Cycle, rows: np.ndarray) -> np.ndarray:
        share = np.zeros(len(cycle.jurisdictions))
        for jurisdiction, value in cycle.admission.homes.items():
            share[cycle.jurisdictions == jurisdiction] = value
        return share[cycle.table.pool[rows]]


class Spread:
    """Prefers nodes and sites holding fewer replicas of this deployment (half weight each)."""

    name = "spread"

    def __init__(self, weight: float = 4.0) -> None:
        self.weight = weight

    def score(self, cycle: Cycle, rows: np.ndarray) -> np.ndarray:
        return 0.5 / (1 + cycle.on_node[rows]) + 0.5 / (1 + cycle.on_site[cycle.table.site[rows]])


class PackGpus:
    """Prefers nodes left fullest after placing (keeps whole nodes free for tensor parallelism)."""

    name = "pack"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def score(self, cycle: Cycle, rows: np.ndarray) -> np.ndarray:
        total = cycle.table.gpus_total[rows]
        left = cycle.free[rows] - cycle.need
        return np.where(total > 0, 1.0 - left / np.where(total > 0, total, 1.0), 0.0)


def default_filters() -> list[Filter]:
    return [RulebookFilter(), PinFilter(), CapacityFilter()]


def default_scorers() -> list[Scorer]:
    return [HomeJurisdiction(), Spread(), PackGpus()]


@dataclass(frozen=True, slots=True)
class Assignment:
    """One replica's place: a node of an admitted pool, and the decisions that allow it there."""

    pool: str
    jurisdiction: str
    site: str
    node_id: str
    node_selector: Mapping[str, str]
    decisions: tuple[Decision, ...]  # one per audience, all allowed
    scores: Mapping[str, float]

    @property
    def declaration(self) -> str | None:
        """The crisis declaration that let any audience cross the border here, if one did."""
        return next((d.declaration for d in self.decisions if d.declaration), None)


@dataclass(frozen=True, eq=False)
class Placement:
    """The outcome of one cycle: where each replica goes, and why every other pool was not used.

    ``feasible`` is how many pools passed every filter in the last round;
    :attr:`rejected` explains each pool removed then (or by the filters that
    run once per cycle).
    """

    spec: DeploymentSpec
    admission: Admission
    requested: int
    assignments: tuple[Assignment, ...]
    pools_total: int
    feasible: int
    cycle: Cycle
    removed: tuple[tuple[Filter, np.ndarray], ...]  # each filter and the pools it removed

    @property
    def complete(self) -> bool:
        return len(self.assignments) == self.requested

    @cached_property
    def rejected(self) -> dict[str, tuple[Any, ...]]:
        """Statuses (or rulebook reasons) per removed pool, in pool order of each filter."""
        ids = self.admission.pool_ids
        return {ids[i]: flt.why(self.cycle, int(i))
                for flt, mask in self.removed for i in np.flatnonzero(mask)}

    def tally(self) -> Counter[str]:
        """How many pools each reason code fired on (a pool counts once per code)."""
        return tally_of(self.rejected.values())

    def codes(self) -> dict[str, list[str]]:
        """Reason codes per rejected pool, each once, in the order they fired."""
        return {pool: list(dict.fromkeys(str(s.code) for s in statuses))
                for pool, statuses in self.rejected.items()}

    def summary(self) -> str:
        """E.g. ``"0/4 pools: 2 RESIDENCY, 2 WRONG_JURISDICTION, 1 MISSING_ACCREDITATION, 1 NO_CAPACITY"``."""
        return summary_of(self.feasible, self.pools_total, self.tally())


class Placer:
    """Runs placement cycles for one policy; keeps nothing between calls, safe to share.

    ``filters`` and ``scorers`` replace the defaults (see the module docstring);
    filters that need no inventory must come first.
    """

    def __init__(self, policy: Policy, *, filters: Sequence[Filter] | None = None,
                 scorers: Sequence[Scorer] | None = None) -> None:
        self.policy = policy
        self.filters = list(default_filters() if filters is None else filters)
        self.scorers = list(default_scorers() if scorers is None else scorers)
        order = [f.needs_inventory for f in self.filters]
        if order != sorted(order):
            raise ValueError(f"filters: got {[f.name for f in self.filters]}; filters that need no "
                             f"inventory must come first, e.g. [RulebookFilter(), PinFilter(), "
                             f"CapacityFilter()]")
        self._pool_ids = tuple(pool.id for pool in policy.bundle.pools)
        self._index = {pool_id: i for i, pool_id in enumerate(self._pool_ids)}
        self._jurisdictions = np.array([pool.jurisdiction for pool in policy.bundle.pools], dtype="<U2")
        self._homes = {tenant.id: tenant.home for tenant in policy.bundle.tenants}
        self._profile_of = np.array([policy.pools[p].profile for p in self._pool_ids], dtype=np.intp)

    def admit(self, spec: DeploymentSpec, *, at: dt.datetime | None = None,
              declarations: Sequence[Declaration] = ()) -> Admission:
        """The rulebook for every audience of ``spec`` on every pool: once per pool profile each."""
        at = at or dt.datetime.now(dt.timezone.utc)
        allowed = np.ones(len(self._pool_ids), dtype=bool)
        verdicts = []
        for workload in spec.workloads():
            answer = self.policy.decide_profiles(workload, at=at, declarations=declarations)
            allowed &= np.array(answer.allowed_profiles, dtype=bool)[self._profile_of]
            verdicts.append(answer)
        homes = Counter(self._homes.get(a.tenant) for a in spec.audiences)
        share = {j: k / len(spec.audiences) for j, k in homes.items() if j is not None}
        return Admission(spec, at, self.policy.digest, tuple(verdicts), self._pool_ids, self._index,
                         allowed, share)

    def place(
        self,
        admission: Admission,
        inventory: Snapshot | Callable[[], Snapshot],
        count: int,
        *,
        existing: Iterable[str] = (),
        held: Mapping[str, float] | None = None,
    ) -> Placement:
        """Choose nodes for ``count`` replicas, one round each.

        ``inventory`` is a snapshot, or a callable read only if some pool
        survives the filters that need none. ``existing`` are node ids of
        this deployment's live replicas (for spreading); ``held`` the GPUs
        per node held by this scheduler's live replicas.
        """
        spec = admission.spec
        cycle = Cycle(spec, admission, self._jurisdictions)
        removed: list[tuple[Filter, np.ndarray]] = []
        keep = np.ones(len(self._pool_ids), dtype=bool)
        for flt in self.filters:
            if not flt.needs_inventory:
                passed = flt.filter(cycle, keep)
                removed.append((flt, keep & ~passed))
                keep = passed
        dynamic = [f for f in self.filters if f.needs_inventory]
        if count <= 0 or not keep.any():
            return Placement(spec, admission, count, (), len(keep), int(keep.sum()), cycle,
                             tuple(removed))
        cycle.attach(inventory if isinstance(inventory, Snapshot) else inventory(), held or {},
                     existing)
        table = cycle.table
        assignments: list[Assignment] = []
        last: list[tuple[Filter, np.ndarray]] = []
        feasible = 0
        for _ in range(count):
            kept, last = keep, []
            for flt in dynamic:
                passed = flt.filter(cycle, kept)
                last.append((flt, kept & ~passed))
                kept = passed
            feasible = int(kept.sum())
            rows = np.flatnonzero(kept[table.pool] & (cycle.free >= cycle.need))
            if rows.size == 0:
                break
            row, scores = self._best(cycle, rows)
            node = table.nodes[row]
            assignments.append(Assignment(
                node.pool, node.jurisdiction, node.site, node.node_id,
                dict(cycle.snapshot.pools[node.pool].pool.node_selector),
                admission.decisions_for(node.pool), scores))
            cycle.reserve(row)
        return Placement(spec, admission, count, tuple(assignments), len(keep), feasible, cycle,
                         tuple(removed + last))

    def _best(self, cycle: Cycle, rows: np.ndarray) -> tuple[int, dict[str, float]]:
        total = np.zeros(rows.size)
        columns = []
        for scorer in self.scorers:
            column = np.asarray(scorer.score(cycle, rows), dtype=np.float64)
            total += scorer.weight * column
            columns.append((scorer.name, column))
        ties = np.flatnonzero(total >= total.max() - 1e-9)
        pick = ties[np.argmax(cycle.table.id_rank[rows[ties]])]  # equal scores: highest node id
        return int(rows[pick]), {name: round(float(column[pick]), 6) for name, column in columns}
