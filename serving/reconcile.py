"""Declared deployments made real: plan and apply them against the running scheduler.

The operator API, ``corridor deploy`` and ``corridor up --deployments FILE`` all
go through one :class:`Reconciler`. For each declared deployment it plans one
:class:`Step`:

``create``     not running yet: placed all or none (the rulebook and capacity decide);
``update``     its model, audiences, pins or engine arguments changed: a rolling update
               (:mod:`scheduler.rollout`) replaces the replicas one at a time, in the
               background; the replica count follows once it is done;
``scale``      only the replica count changed;
``remove``     with ``prune``, a managed deployment the declaration no longer lists;
``unchanged``  nothing to do.

A dry run plans the same steps and asks the scheduler where each new replica
would go (:meth:`scheduler.deployments.Deployments.preview`), or for the
rulebook's tally when no pool allows it; nothing starts, nothing is written.

Deployments that nobody declared (batch replicas) are never touched here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from scheduler.deployments import Deployments
from scheduler.exceptions import SchedulerError, SpecError, UnknownDeploymentError
from scheduler.rollout import Rollout, check_allowed
from scheduler.spec import DeploymentSpec
from serving.deployments_file import DeploymentDecl
from serving.models.catalog import ModelCatalog

log = logging.getLogger(__name__)

Action = Literal["create", "update", "scale", "remove", "unchanged"]


class ReconcileError(Exception):
    """A declared change that cannot be made now; ``code`` is stable, the message says why."""

    code = "deployment_error"


class Busy(ReconcileError):
    """A rolling update of the deployment is under way; wait for it (``GET`` shows progress)."""

    code = "rollout_in_progress"


class NotManaged(ReconcileError):
    """A deployment of that name runs but was not declared (a batch replica); choose another name."""

    code = "deployment_not_managed"


@dataclass
class Step:
    """One planned (then done) change of one deployment."""

    action: Action
    name: str
    replicas_from: int | None = None
    replicas_to: int | None = None
    pools: list[str] = field(default_factory=list)  # intended pool of each new replica
    refusal: str | None = None  # the tally when no pool may or can take it
    changes: list[str] = field(default_factory=list)  # the fields an update changes
    status: str = "planned"  # planned, done, rolling, failed
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "name": self.name, "replicas_from": self.replicas_from,
                "replicas_to": self.replicas_to, "pools": self.pools, "refusal": self.refusal,
                "changes": self.changes, "status": self.status, "error": self.error}


@dataclass
class Managed:
    """A declared deployment: its declaration, who owns it, and its rolling update if any."""

    decl: DeploymentDecl
    owner: str | None = None  # the tenant whose admin declared it; None for operators
    rollout: Rollout | None = None

    def rolling(self) -> bool:
        return self.rollout is not None and self.rollout.state in ("pending", "running")


class Reconciler:
    """Plans and applies declared deployments on ``deployments``; thread-safe.

    ``catalog`` turns a model of the bundle into its replica configuration.
    ``ready_timeout_s`` bounds the wait for each new replica of a rolling update.
    """

    def __init__(self, deployments: Deployments, catalog: ModelCatalog, *,
                 ready_timeout_s: float = 900.0) -> None:
        self.deployments = deployments
        self.catalog = catalog
        self.ready_timeout_s = ready_timeout_s
        self._managed: dict[str, Managed] = {}
        self._lock = threading.RLock()

    # -- reading --------------------------------------------------------------

    def managed(self) -> dict[str, Managed]:
        with self._lock:
            return dict(self._managed)

    def describe(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every deployment (or one) as ``GET /admin/deployments`` shows it: the scheduler's
        view plus, for declared ones, the declaration, owner and rolling update."""
        views = [self.deployments.get(name)] if name is not None else self.deployments.list()
        managed = self.managed()
        out = []
        for view in views:
            item = view.to_json()
            entry = managed.get(view.name)
            item["managed"] = entry is not None
            if entry is not None:
                item["declared"] = entry.decl.model_dump(mode="json")
                item["owner"] = entry.owner
                item["rollout"] = entry.rollout.to_json() if entry.rollout else None
            out.append(item)
        return out

    def tenant_gpus(self, tenant: str, *, without: Iterable[str] = ()) -> int:
        """GPUs declared by deployments that serve only ``tenant`` (its ``max_gpus`` counts them)."""
        skip = set(without)
        return sum(m.decl.gpus() for name, m in self.managed().items()
                   if name not in skip and {a.tenant for a in m.decl.audiences} == {tenant})

    # -- planning -------------------------------------------------------------

    def plan(self, decls: Sequence[DeploymentDecl], *, prune: bool = False,
             may_remove: Any = None) -> list[Step]:
        """The steps that would bring the running deployments to ``decls`` (a dry run).
        With ``prune``, declared deployments not listed are removed if ``may_remove(name)``."""
        steps = [self._plan_one(decl, preview=True) for decl in decls]
        if prune:
            listed = {d.name for d in decls}
            for name, entry in sorted(self.managed().items()):
                if name not in listed and (may_remove is None or may_remove(name)):
                    steps.append(Step("remove", name, entry.decl.initial_replicas, 0))
        return steps

    def _plan_one(self, decl: DeploymentDecl, *, preview: bool) -> Step:
        with self._lock:
            entry = self._managed.get(decl.name)
        running = self._running(decl.name)
        if running is None:
            step = Step("create", decl.name, 0, decl.initial_replicas)
            if preview:
                self._preview(step, self._spec(decl, decl.initial_replicas), decl.initial_replicas)
            return step
        if entry is None:
            raise NotManaged(f"deployment {decl.name!r} runs but was not declared (a batch "
                             f"replica?); choose another name")
        target = self._target(decl, running)
        changes = [k for k, v in decl.runtime().items() if entry.decl.runtime().get(k) != v]
        if changes:
            step = Step("update", decl.name, running, target, changes=changes)
            if preview:
                spec = self._spec(decl, running)
                try:
                    check_allowed(self.deployments, spec)
                except SchedulerError as exc:
                    step.refusal = getattr(exc, "summary", str(exc))
                    return step
                self._preview(step, spec, 1)
            return step
        if target != running:
            step = Step("scale", decl.name, running, target)
            if preview and target > running:
                self._preview(step, self._spec(decl, running), target - running)
            return step
        return Step("unchanged", decl.name, running, running)

    def _preview(self, step: Step, spec: DeploymentSpec, count: int) -> None:
        placement = self.deployments.preview(spec, count)
        step.pools = [a.pool for a in placement.assignments]
        if not placement.complete:
            step.refusal = placement.summary()

    @staticmethod
    def _target(decl: DeploymentDecl, running: int) -> int:
        if isinstance(decl.replicas, int):
            return decl.replicas
        return min(max(running, decl.replicas.min), decl.replicas.max)

    def _running(self, name: str) -> int | None:
        try:
            return self.deployments.get(name).spec.replicas
        except UnknownDeploymentError:
            return None

    def _spec(self, decl: DeploymentDecl, replicas: int) -> DeploymentSpec:
        model = self.deployments.policy.models.get(decl.model)
        if model is None:
            raise SpecError(f"model: unknown model {decl.model!r}; known: "
                            f"{', '.join(sorted(self.deployments.policy.models))}")
        config = self.catalog.replica_config(model, decl.engine_args)
        return decl.to_spec(replicas, config, self.catalog.digests.get(model.id))

    # -- applying -------------------------------------------------------------

    def apply(self, decls: Sequence[DeploymentDecl], *, prune: bool = False, owner: str | None = None,
              may_remove: Any = None) -> list[Step]:
        """Plan, then do every step; a step that fails says why and the others still run."""
        steps = []
        for step in self.plan(decls, prune=prune, may_remove=may_remove):
            decl = next((d for d in decls if d.name == step.name), None)
            try:
                steps.append(self._do(step, decl, owner))
            except (SchedulerError, ReconcileError, ValueError) as exc:
                step.status, step.error = "failed", str(exc)
                steps.append(step)
        return steps

    def apply_one(self, decl: DeploymentDecl, *, owner: str | None = None) -> Step:
        """Create or change one deployment; raises what stops it (the API answers it)."""
        return self._do(self._plan_one(decl, preview=False), decl, owner)

    def _do(self, step: Step, decl: DeploymentDecl | None, owner: str | None) -> Step:
        name = step.name
        with self._lock:
            entry = self._managed.get(name)
            if entry is not None and entry.rolling():
                raise Busy(f"deployment {name!r} is being updated "
                           f"({entry.rollout.to_json()}); wait until it is done")
        if step.action == "remove":
            self.remove(name)
        elif step.action == "create" and decl is not None:
            view = self.deployments.deploy(self._spec(decl, decl.initial_replicas))
            step.pools = [r.pool for r in view.replicas]
            with self._lock:
                self._managed[name] = Managed(decl, owner)
        elif step.action == "scale" and decl is not None:
            view = self.deployments.scale(name, step.replicas_to or 0)
            step.pools = [r.pool for r in view.replicas]
            with self._lock:
                self._managed[name] = Managed(decl, entry.owner if entry else owner)
        elif step.action == "unchanged" and decl is not None:  # e.g. autoscaling bounds moved
            with self._lock:
                self._managed[name] = Managed(decl, entry.owner if entry else owner,
                                              entry.rollout if entry else None)
        elif step.action == "update" and decl is not None:
            spec = self._spec(decl, step.replicas_from or 0)
            check_allowed(self.deployments, spec)
            rollout = Rollout(self.deployments, name, spec, ready_timeout_s=self.ready_timeout_s)
            with self._lock:
                self._managed[name] = Managed(decl, entry.owner if entry else owner, rollout)
            target = step.replicas_to
            rollout.start(after=lambda done: self._settle(name, target, done))
            step.status = "rolling"
            return step
        step.status = "done"
        return step

    def _settle(self, name: str, replicas: int | None, rollout: Rollout) -> None:
        """After a rolling update, the declared replica count."""
        if rollout.state == "done" and replicas is not None and self._running(name) != replicas:
            self.deployments.scale(name, replicas)

    def scale(self, name: str, replicas: int) -> Step:
        """Set a fixed replica count (an autoscaled deployment becomes fixed)."""
        with self._lock:
            entry = self._managed.get(name)
        if entry is not None:
            decl = entry.decl.model_copy(update={"replicas": replicas})
            return self._do(Step("scale", name, self._running(name), replicas), decl, entry.owner)
        if self._running(name) is None:
            raise UnknownDeploymentError(name, [v.name for v in self.deployments.list()])
        raise NotManaged(f"deployment {name!r} was not declared; it is not scaled here")

    def remove(self, name: str) -> None:
        """Stop every replica of a declared deployment and forget it."""
        with self._lock:
            entry = self._managed.get(name)
            if entry is None:
                if self._running(name) is None:
                    raise UnknownDeploymentError(name, list(self._managed))
                raise NotManaged(f"deployment {name!r} was not declared; it is not removed here")
            if entry.rolling():
                raise Busy(f"deployment {name!r} is being updated; wait until it is done")
        self.deployments.remove(name)
        with self._lock:
            self._managed.pop(name, None)

    def wait_rollouts(self, timeout_s: float | None = None) -> None:
        """Wait for every rolling update under way (tests, shutdown)."""
        for entry in self.managed().values():
            if entry.rollout is not None:
                entry.rollout.wait(timeout_s)
