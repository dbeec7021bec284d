"""Deployments: model replicas placed by the rulebook and kept placed when nodes fail.

Who calls what:

- the admin API and ``corridor up``: :meth:`Deployments.deploy`, :meth:`~Deployments.scale`,
  :meth:`~Deployments.remove`, :meth:`~Deployments.list` (``GET /admin/deployments``),
  :meth:`~Deployments.preview` (a dry run: where replicas would go, or the tally);
- :mod:`scheduler.rollout`: :meth:`~Deployments.begin_update`, :meth:`~Deployments.surge`,
  :meth:`~Deployments.retire`, :meth:`~Deployments.readiness` (replace replicas one at a time);
- the gateway: :meth:`~Deployments.list` to route a request to an allowed replica's endpoint;
- a daemon thread (:meth:`~Deployments.start`), or tests, :meth:`~Deployments.heal`.

Every placement cycle ends in the ledger: a ``placement`` entry per audience
(allowed, with the Ray node the replica actually landed on) or a refusal
(``allowed=false`` with the reasons per pool), a ``violation`` entry when
Ray put a replica off its decision (it is killed before serving). Releasing a
replica (scale down, remove, a rolling update) is a ``placement`` entry under the
decision id that placed it, ``detail.action`` saying why.

Given a :class:`~scheduler.current_policy.CurrentPolicy`, every cycle reads the
policy in force: after a switch, the next healing pass evicts what the new rules
deny and places the missing replicas where they allow. Each replica keeps the
spec it was started from, so during a rolling update old and new replicas are
each judged under their own spec.

Healing re-places lost replicas (node dead, actor dead, or the actor alive but its
server dead: it says ``server-dead`` in ``describe()``) and evicts replicas
the rulebook no longer allows where they run (e.g. a crisis declaration
expired). It asks the same rulebook, so a replica crosses the border only
under an active crisis declaration, named in the ledger; without compliant
capacity the deployment is reported degraded, never moved elsewhere.

One module because lifecycle calls and healing passes share one lock and the
replica maps they both change; split apart they would have to share those.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from policies import Declaration, Policy

from scheduler.binding import Binder, BoundReplica, ReplicaBinding
from scheduler.current_policy import CurrentPolicy, current_of
from scheduler.exceptions import (DuplicateDeploymentError, PlacementError, PlacementViolation,
                                  SchedulerError, SpecError, UnknownDeploymentError)
from scheduler.inventory import Inventory, LedgerWriter
from scheduler.periodic import Periodic
from scheduler.ledger.decisions import decision_entry, refusal_entry
from scheduler.placement import Admission, Assignment, Placement, Placer, Status, default_filters
from scheduler.quotas import GpuQuotaFilter
from scheduler.spec import DeploymentSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """One replica as ``GET /admin/deployments`` shows it; ``state`` is Ray's actor state."""

    id: str
    deployment: str
    model: str
    pool: str
    jurisdiction: str
    node_id: str
    actor_id: str
    state: str
    endpoint: str | None
    declaration: str | None
    decision_ids: tuple[str, ...]
    placement_group: str | None  # Ray placement group id, with tensor parallelism
    outdated: bool = False  # started from an earlier spec (a rolling update replaces it)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "model": self.model, "outdated": self.outdated,
                "pool": self.pool, "jurisdiction": self.jurisdiction,
                "node_id": self.node_id, "actor_id": self.actor_id, "state": self.state,
                "endpoint": self.endpoint, "declaration": self.declaration,
                "decision_ids": list(self.decision_ids), "placement_group": self.placement_group}


@dataclass(frozen=True, slots=True)
class DeploymentView:
    """A deployment: ``ready`` when every wanted replica runs, else ``degraded`` with the reason."""

    name: str
    spec: DeploymentSpec
    status: str
    replicas: tuple[ReplicaView, ...]
    reason: str | None

    def to_json(self) -> dict[str, Any]:
        """The per-deployment shape of ``GET /admin/deployments``."""
        return {"name": self.name, "model": self.spec.model, "status": self.status,
                "audiences": [str(a) for a in self.spec.audiences],
                "replicas_wanted": self.spec.replicas, "reason": self.reason,
                "replicas": [r.to_json() for r in self.replicas]}


@dataclass(frozen=True, slots=True)
class HealReport:
    """What one healing pass did: replicas lost, evicted and placed; deployments left short."""

    lost: tuple[str, ...] = ()
    evicted: tuple[str, ...] = ()
    placed: tuple[str, ...] = ()
    degraded: dict[str, str] = field(default_factory=dict)


#: The state a replica actor reports when its server died while the actor lives.
SERVER_DEAD = "server-dead"


@dataclass(slots=True)
class _Replica:
    id: str
    bound: BoundReplica
    assignment: Assignment
    endpoint: str | None
    spec: DeploymentSpec  # what it was started from
    revision: int  # the deployment's revision then (begin_update adds one)
    server_state: str | None = None  # the actor's own state, as its last describe() said


@dataclass(slots=True)
class _Deployment:
    spec: DeploymentSpec
    replicas: dict[str, _Replica] = field(default_factory=dict)
    serial: int = 0
    shortfall: str | None = None  # the refusal last written to the ledger while short
    revision: int = 0

    def next_id(self) -> str:
        self.serial += 1
        return f"{self.spec.name}-r{self.serial}"


class Deployments:
    """The deployments of one scheduler on one Ray cluster; thread-safe.

    ``actor_class`` meets :class:`~scheduler.binding.ReplicaActor`.
    ``declarations`` returns the crisis declarations held outside the bundle
    (the operator API's), read at every cycle. Lifecycle calls and healing
    passes run one at a time; :meth:`list` never waits for them.
    """

    def __init__(self, policy: Policy | CurrentPolicy, ledger: LedgerWriter, actor_class: Any, *,
                 inventory: Inventory | None = None, placer: Placer | None = None,
                 binder: Binder | None = None,
                 declarations: Callable[[], Sequence[Declaration]] | None = None,
                 heal_period_s: float = 5.0) -> None:
        if heal_period_s <= 0:
            raise ValueError(f"heal_period_s: got {heal_period_s!r}, want seconds > 0, e.g. 5.0")
        self.current = current_of(policy)
        if inventory is not None and inventory.policy.digest != self.current.policy.digest:
            raise ValueError("inventory: built for policy "
                             f"{inventory.policy.digest}, want {self.current.policy.digest}; pass "
                             "Inventory(policy, ledger=ledger)")
        self.ledger = ledger
        self.actor_class = actor_class
        self.inventory = inventory or Inventory(self.current, ledger=ledger)
        self._placers: dict[str, Placer] = {}
        self._template = placer or Placer(
            self.current.policy,
            filters=[*default_filters(), GpuQuotaFilter(self.current.policy, self.tenant_gpus)])
        self._placers[self._template.policy.digest] = self._template
        self.binder = binder or Binder()
        self.declarations = declarations or (lambda: ())
        self.heal_period_s = heal_period_s
        self._deployments: dict[str, _Deployment] = {}
        self._ops = threading.RLock()  # one lifecycle call or healing pass at a time
        self._view = threading.Lock()  # guards the replica maps for list()
        self._healer = Periodic(self._heal_and_log, heal_period_s, "corridor-healing", log,
                                "healing pass failed")

    @property
    def policy(self) -> Policy:
        """The policy in force."""
        return self.current.policy

    @property
    def placer(self) -> Placer:
        """The placer of the policy in force (with the filters and scorers given at construction)."""
        return self._placer_for(self.current.policy)

    def _placer_for(self, policy: Policy) -> Placer:
        placer = self._placers.get(policy.digest)
        if placer is None:
            template = self._template
            placer = Placer(policy, filters=template.filters, scorers=template.scorers)
            self._placers = {policy.digest: placer}  # keep only the policy in force
        return placer

    # -- lifecycle ----------------------------------------------------------

    def deploy(self, spec: DeploymentSpec) -> DeploymentView:
        """Place and start every replica of ``spec``, or none.

        Raises :class:`PlacementError` (the refusal is in the ledger) when the
        replicas do not all fit on allowed pools; the inventory is not even
        read when the rulebook allows no pool. A bind failure releases the
        replicas started so far and is raised.
        """
        with self._ops:
            if spec.name in self._deployments:
                raise DuplicateDeploymentError(f"deployment {spec.name!r} exists; scale or remove it")
            deployment = _Deployment(spec)
            self._grow(deployment, spec.replicas, "deploy")
            with self._view:
                self._deployments[spec.name] = deployment
            return self._view_of(deployment)

    def scale(self, name: str, replicas: int) -> DeploymentView:
        """Change the wanted replica count: place the new ones (all or none), or release the
        newest (outdated ones first)."""
        with self._ops:
            deployment = self._get(name)
            spec = deployment.spec.with_replicas(replicas)
            surplus = len(deployment.replicas) - replicas
            if surplus < 0:
                self._grow(deployment, -surplus, "scale")
            newest = list(deployment.replicas.values())[::-1]
            newest.sort(key=lambda r: r.revision == deployment.revision)  # outdated first
            for replica in newest[:max(surplus, 0)]:
                self._release(deployment, replica, "scale")
            deployment.spec = spec
            deployment.shortfall = None
            return self._view_of(deployment)

    def remove(self, name: str) -> None:
        """Stop and release every replica of the deployment and forget it."""
        with self._ops:
            deployment = self._get(name)
            for replica in list(deployment.replicas.values()):
                self._release(deployment, replica, "remove")
            with self._view:
                del self._deployments[name]

    def preview(self, spec: DeploymentSpec, count: int | None = None) -> Placement:
        """Where ``count`` (default ``spec.replicas``) more replicas of ``spec`` would go now,
        beside the replicas running; nothing is started and nothing written. A placement that
        is not complete says why in :meth:`~scheduler.placement.Placement.summary`."""
        policy = self.current.policy
        placer = self._placer_for(policy)
        existing = self._deployments.get(spec.name)
        admission = placer.admit(spec, declarations=self.declarations())
        return placer.place(
            admission, lambda: self.inventory.refresh(policy),
            spec.replicas if count is None else count, held=self._held(),
            existing=[r.bound.node_id for r in existing.replicas.values()] if existing else [])

    # -- rolling updates (driven by scheduler.rollout) ------------------------

    def begin_update(self, name: str, spec: DeploymentSpec) -> list[str]:
        """Make ``spec`` the deployment's spec (same name and replica count, e.g. another model
        or engine arguments) and return the replicas started from an earlier one, oldest
        first. Nothing is started or stopped here: :meth:`surge` and :meth:`retire` do that."""
        with self._ops:
            deployment = self._get(name)
            if spec.name != name:
                raise SpecError(f"spec.name: got {spec.name!r}, want {name!r} (the deployment updated)")
            deployment.spec = spec.with_replicas(deployment.spec.replicas)
            deployment.revision += 1
            deployment.shortfall = None
            return [r.id for r in deployment.replicas.values() if r.revision != deployment.revision]

    def revert_update(self, name: str, spec: DeploymentSpec) -> bool:
        """Undo :meth:`begin_update` while no replica of the new spec runs: ``spec`` and the
        revision before it come back, so the running replicas are current again."""
        with self._ops:
            deployment = self._get(name)
            if any(r.revision == deployment.revision for r in deployment.replicas.values()):
                return False
            deployment.spec = spec.with_replicas(deployment.spec.replicas)
            deployment.revision -= 1
            return True

    def surge(self, name: str) -> ReplicaView:
        """Place and start one more replica from the deployment's spec, under the same rules as
        :meth:`deploy` (raises :class:`PlacementError` when no allowed pool has room)."""
        with self._ops:
            deployment = self._get(name)
            before = set(deployment.replicas)
            self._grow(deployment, 1, "rollout")
            new = next(r for r in deployment.replicas if r not in before)
        return next(v for v in self._view_of(deployment).replicas if v.id == new)

    def retire(self, name: str, replica_id: str, action: str = "rollout") -> bool:
        """Stop and release one replica (``action`` goes to the ledger); False if it is gone."""
        with self._ops:
            deployment = self._get(name)
            replica = deployment.replicas.get(replica_id)
            if replica is None:
                return False
            self._release(deployment, replica, action)
            return True

    def readiness(self, name: str, replica_id: str) -> str:
        """``ready`` (serving), ``starting``, or ``failed`` (its actor or server is gone)."""
        deployment = self._get(name)
        replica = deployment.replicas.get(replica_id)
        if replica is None or self.binder.actor_state(replica.bound.actor_id) == "DEAD":
            return "failed"
        answer = self.binder.describe([replica.bound]).get(replica.bound.actor_id) or {}
        if answer.get("state") == "failed":
            return "failed"
        if answer.get("endpoint"):
            replica.endpoint = answer["endpoint"]
            return "ready"
        return "starting"

    def get(self, name: str) -> DeploymentView:
        """One deployment, with Ray's current state of each replica."""
        with self._view:
            deployment = self._deployments.get(name)
        if deployment is None:
            raise UnknownDeploymentError(name, list(self._deployments))
        return self._view_of(deployment)

    def list(self) -> list[DeploymentView]:
        """Every deployment, with where each replica runs and Ray's state of its actor."""
        with self._view:
            deployments = list(self._deployments.values())
        return [self._view_of(d) for d in deployments]

    def tenant_gpus(self) -> Counter[str]:
        """GPUs the live replicas hold per tenant (a replica counts for each audience's tenant)."""
        held: Counter[str] = Counter()
        with self._view:
            deployments = list(self._deployments.values())
        for deployment in deployments:
            gpus = deployment.spec.gpus_per_replica * len(deployment.replicas)
            for tenant in dict.fromkeys(a.tenant for a in deployment.spec.audiences):
                held[tenant] += gpus
        return held

    def close(self, *, release: bool = True) -> None:
        """Stop healing; with ``release`` also stop and release every replica."""
        self.stop()
        if release:
            with self._ops:
                for name in list(self._deployments):
                    self.remove(name)

    # -- healing ------------------------------------------------------------

    def heal(self) -> HealReport:
        """One healing pass over every deployment (see the module docstring); returns what it did."""
        with self._ops:
            policy = self.current.policy  # one policy for the whole pass
            placer = self._placer_for(policy)
            snapshot = self.inventory.refresh(policy)
            declarations = self.declarations()
            lost: list[str] = []
            evicted: list[str] = []
            placed: list[str] = []
            degraded: dict[str, str] = {}
            for deployment in list(self._deployments.values()):
                gone: list[str] = []
                admissions: dict[int, Admission] = {}
                for replica in list(deployment.replicas.values()):
                    admission = admissions.get(id(replica.spec))
                    if admission is None:
                        admission = admissions[id(replica.spec)] = placer.admit(
                            replica.spec, declarations=declarations)
                    if not admission.allows(replica.assignment.pool):
                        self._evict(deployment, replica, admission)
                        evicted.append(replica.id)
                        gone.append(f"{replica.id} (evicted)")
                for replica in list(deployment.replicas.values()):
                    if replica.bound.node_id not in snapshot.nodes:
                        why = "node-lost"
                    elif self.binder.actor_state(replica.bound.actor_id) == "DEAD":
                        why = "actor-dead"
                    elif replica.server_state == SERVER_DEAD:
                        why = "server-dead"
                    else:
                        continue
                    log.warning("replica %s lost (%s) on node %s", replica.id, why,
                                replica.bound.node_id)
                    self._drop(deployment, replica, graceful=False)
                    lost.append(replica.id)
                    gone.append(f"{replica.id} ({why})")
                missing = deployment.spec.replicas - len(deployment.replicas)
                if missing <= 0:
                    deployment.shortfall = None
                    continue
                admission = placer.admit(deployment.spec, declarations=declarations)
                placement = placer.place(
                    admission, snapshot, missing, held=self._held(),
                    existing=[r.bound.node_id for r in deployment.replicas.values()])
                failures = []
                for assignment in placement.assignments:
                    replaces = gone.pop(0) if gone else None
                    try:
                        placed.append(self._bind(deployment, placement, assignment, "heal",
                                                 replaces=replaces).id)
                    except SchedulerError as exc:
                        failures.append(str(exc))
                        log.warning("healing %s: %s", deployment.spec.name, exc)
                if placement.complete and not failures:
                    deployment.shortfall = None
                    continue
                reason = placement.summary() if not placement.complete else "; ".join(failures)
                degraded[deployment.spec.name] = reason
                if not placement.complete and deployment.shortfall != reason:
                    self._refuse(placement, "heal")
                deployment.shortfall = reason
            self._refresh_endpoints()
            return HealReport(tuple(lost), tuple(evicted), tuple(placed), degraded)

    def start(self) -> Deployments:
        """Run :meth:`heal` every ``heal_period_s`` in a daemon thread until :meth:`stop`."""
        self._healer.start()
        return self

    def request_heal(self) -> None:
        """Run a healing pass now in the healing thread (e.g. a crisis declaration changed, so
        crossed replicas are placed, or drained and removed, within seconds); a burst of
        requests costs at most two passes. Needs :meth:`start`."""
        self._healer.wake()

    def stop(self) -> None:
        """Stop the healing thread (waits for a pass in progress)."""
        self._healer.stop()

    def __enter__(self) -> Deployments:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _heal_and_log(self) -> None:
        report = self.heal()
        if report.lost or report.evicted or report.placed:
            log.info("healing: %s", report)

    # -- internals ----------------------------------------------------------

    def _get(self, name: str) -> _Deployment:
        deployment = self._deployments.get(name)
        if deployment is None:
            raise UnknownDeploymentError(name, list(self._deployments))
        return deployment

    def _held(self) -> dict[str, float]:
        held: Counter[str] = Counter()
        for deployment in self._deployments.values():
            for replica in deployment.replicas.values():
                held[replica.bound.node_id] += deployment.spec.gpus_per_replica
        return dict(held)

    def _grow(self, deployment: _Deployment, count: int, action: str) -> None:
        """Place ``count`` more replicas, all or none: refuse (ledger + raise) or bind them all."""
        spec = deployment.spec
        policy = self.current.policy
        placer = self._placer_for(policy)
        admission = placer.admit(spec, declarations=self.declarations())
        placement = placer.place(
            admission, lambda: self.inventory.refresh(policy), count, held=self._held(),
            existing=[r.bound.node_id for r in deployment.replicas.values()])
        if not placement.complete:
            self._refuse(placement, action)
            raise PlacementError(spec.name, placement.summary(), placement.tally(), placement.codes(),
                                 placed=len(placement.assignments), requested=count)
        started: list[_Replica] = []
        try:
            for assignment in placement.assignments:
                started.append(self._bind(deployment, placement, assignment, action))
        except BaseException:
            for replica in started:
                self._drop(deployment, replica, graceful=True)
            raise

    def _bind(self, deployment: _Deployment, placement: Placement, assignment: Assignment,
              action: str, *, replaces: str | None = None) -> _Replica:
        """Bind, verify, record in the ledger, then start one replica."""
        spec = deployment.spec
        replica_id = deployment.next_id()
        binding = ReplicaBinding.for_assignment(replica_id, assignment, spec)
        kwargs = {"deployment": spec.name, "replica_id": replica_id, "model": spec.model,
                  "pool": assignment.pool, "jurisdiction": assignment.jurisdiction,
                  "tensor_parallel_size": spec.tensor_parallel_size,
                  "config": dict(spec.replica_config)}
        try:
            bound = self.binder.bind(self.actor_class, binding, kwargs)
        except PlacementViolation as exc:
            self._record_violation(spec, assignment, binding, exc)
            raise
        try:
            self.ledger.append_many([
                decision_entry("placement", decision, node_id=bound.node_id, summary=placement.summary(),
                               detail={"action": action, "deployment": spec.name, "replica": replica_id,
                                       "actor_id": bound.actor_id, "replaces": replaces,
                                       "tensor_parallel_size": spec.tensor_parallel_size,
                                       "node_labels": dict(bound.labels),
                                       "label_selector": binding.selector.to_ray(),
                                       "scores": dict(assignment.scores)})
                for decision in assignment.decisions])
            self.binder.start(bound)
        except BaseException:
            self.binder.release(bound, graceful=False)
            raise
        replica = _Replica(replica_id, bound, assignment, bound.description.get("endpoint"), spec,
                           deployment.revision)
        with self._view:
            deployment.replicas[replica_id] = replica
        log.info("replica %s of %s on %s (%s), node %s", replica_id, spec.name, assignment.pool,
                 assignment.jurisdiction, bound.node_id)
        return replica

    def _release(self, deployment: _Deployment, replica: _Replica, action: str) -> None:
        """Stop a replica on request (scale, remove, rollout): a ``placement`` entry under the
        decision id that placed it says so, then it is released."""
        self.ledger.append_many([
            decision_entry("placement", decision, node_id=replica.bound.node_id,
                           detail={"action": action, "deployment": deployment.spec.name,
                                   "replica": replica.id, "actor_id": replica.bound.actor_id,
                                   "released": True})
            for decision in replica.assignment.decisions])
        self._drop(deployment, replica, graceful=True)

    def _drop(self, deployment: _Deployment, replica: _Replica, *, graceful: bool) -> None:
        self.binder.release(replica.bound, graceful=graceful, wait_s=5.0 if graceful else 0.0)
        with self._view:
            deployment.replicas.pop(replica.id, None)

    def _refuse(self, placement: Placement, action: str) -> None:
        """Write the refusal: one ``placement`` entry with ``allowed=false`` per audience."""
        spec = placement.spec
        admission = placement.admission
        scheduler_codes = [s.code for statuses in placement.rejected.values() for s in statuses
                           if isinstance(s, Status)]
        detail = {"action": action, "deployment": spec.name, "placement": placement.summary(),
                  "pools": placement.codes(), "requested": placement.requested,
                  "placed": len(placement.assignments)}
        drafts = [refusal_entry("placement", evaluation, extra_reasons=scheduler_codes, detail=detail)
                  for evaluation in admission.evaluations]
        self.ledger.append_many(drafts)

    def _record_violation(self, spec: DeploymentSpec, assignment: Assignment,
                          binding: ReplicaBinding, exc: PlacementViolation) -> None:
        log.error("placement violation: %s", exc)
        self.ledger.append_many([
            decision_entry("violation", decision, node_id=exc.node_id, allowed=False,
                           extra_reasons=[str(m.code) for m in exc.mismatches],
                           detail={"action": "killed", "deployment": spec.name, "replica": binding.replica,
                                   "expected": binding.expected.to_ray(), "landed_labels": exc.labels,
                                   "mismatches": [{"code": str(m.code), "message": m.message}
                                                  for m in exc.mismatches]})
            for decision in assignment.decisions])

    def _evict(self, deployment: _Deployment, replica: _Replica, admission: Admission) -> None:
        """Release a replica the rulebook no longer allows where it runs; the ledger says why."""
        spec = deployment.spec
        pool = replica.assignment.pool
        if pool in admission.index:
            decisions = admission.decisions_for(pool)
        else:  # the pool left the bundle: the rulebook says so (UNKNOWN_POOL)
            decisions = tuple(self.current.policy.decide(w, pool) for w in replica.spec.workloads())
        codes = list(dict.fromkeys(r.code for d in decisions for r in d.reasons))
        log.warning("evicting replica %s from %s: %s", replica.id, pool, ", ".join(codes))
        self.ledger.append_many([
            decision_entry("placement", decision, node_id=replica.bound.node_id, allowed=False,
                           declaration=replica.assignment.declaration,
                           detail={"action": "evict", "deployment": spec.name, "replica": replica.id,
                                   "actor_id": replica.bound.actor_id})
            for decision in decisions])
        self._drop(deployment, replica, graceful=True)

    def _refresh_endpoints(self) -> None:
        with self._view:
            replicas = [r for d in self._deployments.values() for r in d.replicas.values()]
        answers = self.binder.describe([r.bound for r in replicas])
        for replica in replicas:
            answer = answers.get(replica.bound.actor_id)
            if answer is not None:
                replica.endpoint = answer.get("endpoint")
                replica.server_state = answer.get("state")

    def _view_of(self, deployment: _Deployment) -> DeploymentView:
        with self._view:
            spec = deployment.spec
            replicas = list(deployment.replicas.values())
            shortfall = deployment.shortfall
        views = tuple(ReplicaView(
            r.id, spec.name, r.spec.model, r.assignment.pool, r.assignment.jurisdiction,
            r.bound.node_id, r.bound.actor_id, self.binder.actor_state(r.bound.actor_id),
            r.endpoint, r.assignment.declaration, tuple(d.id for d in r.assignment.decisions),
            r.bound.group.id.hex() if r.bound.group is not None else None,
            r.revision != deployment.revision)
            for r in replicas)
        whole = len(views) >= spec.replicas and all(v.state == "ALIVE" for v in views)
        reason = None if whole else (shortfall or f"{len(views)} of {spec.replicas} replicas running")
        return DeploymentView(spec.name, spec, "ready" if whole else "degraded", views, reason)
