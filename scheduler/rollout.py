"""Rolling updates: replace a deployment's replicas one at a time, never outside the rules.

A change of model, engine arguments, audiences or pins cannot be applied to a
running vLLM server, so each replica is replaced:

1. the new spec becomes the deployment's (:meth:`Deployments.begin_update`); the
   running replicas are now *outdated* but keep serving;
2. for each outdated replica: one new replica is placed and started under the new
   spec (:meth:`Deployments.surge`: the rulebook and capacity decide, as for any
   placement; a refusal is written to the ledger and stops the rollout before
   anything is stopped), the rollout waits until it serves, then the outdated one
   is released (:meth:`Deployments.retire`, a ``placement`` entry with
   ``action: rollout``).

If a new replica never serves (its server fails, or the wait times out), it is
released, the old spec is put back, and the replicas not yet replaced keep
serving under it; :attr:`Rollout.error` says why. Healing runs between steps and
judges every replica under the spec it was started from.

Before the first step, :func:`check_allowed` asks the rulebook whether any pool
allows the new spec at all, so a change no pool allows is refused at once with
the tally and nothing is touched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from scheduler.exceptions import PlacementError, SchedulerError
from scheduler.placement import Placer
from scheduler.spec import DeploymentSpec

log = logging.getLogger(__name__)

State = Literal["pending", "running", "done", "failed"]


class RollingDeployments(Protocol):
    """What a rollout needs of :class:`scheduler.deployments.Deployments`."""

    placer: Placer

    def get(self, name: str) -> Any: ...
    def begin_update(self, name: str, spec: DeploymentSpec) -> list[str]: ...
    def revert_update(self, name: str, spec: DeploymentSpec) -> bool: ...
    def surge(self, name: str) -> Any: ...
    def retire(self, name: str, replica_id: str, action: str = "rollout") -> bool: ...
    def readiness(self, name: str, replica_id: str) -> str: ...
    def declarations(self) -> Any: ...


def check_allowed(deployments: RollingDeployments, spec: DeploymentSpec) -> None:
    """Raise :class:`PlacementError` (with the tally) when the rulebook allows no pool for
    ``spec`` (its pins included); nothing is written or started."""
    placer = deployments.placer
    admission = placer.admit(spec, declarations=deployments.declarations())
    placement = placer.place(admission, _no_inventory, 0)  # the filters that need no inventory
    if placement.feasible == 0:
        raise PlacementError(spec.name, placement.summary(), placement.tally(), placement.codes(),
                             requested=spec.replicas)


def _no_inventory() -> Any:
    raise AssertionError("a zero-replica placement never reads the inventory")


@dataclass
class Rollout:
    """Replaces the replicas of deployment ``name`` with ``spec``'s, one at a time.

    :meth:`run` blocks (minutes with vLLM: each new replica must serve before an old
    one stops); :meth:`start` runs it in a daemon thread. ``ready_timeout_s`` bounds
    the wait for each new replica.
    """

    deployments: RollingDeployments
    name: str
    spec: DeploymentSpec
    ready_timeout_s: float = 900.0
    poll_s: float = 1.0
    state: State = "pending"
    replaced: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    total: int = 0
    error: str | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self, after: Callable[[Rollout], object] | None = None) -> Rollout:
        """Run in a daemon thread; then ``after(self)`` in that thread, whatever the outcome."""
        self._thread = threading.Thread(target=self._run_logged, args=(after,),
                                        name=f"rollout-{self.name}", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout_s: float | None = None) -> Rollout:
        if self._thread is not None:
            self._thread.join(timeout_s)
        return self

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "model": self.spec.model, "replaced": len(self.replaced),
                "total": self.total, "error": self.error}

    def run(self) -> Rollout:
        """Do the rollout (see the module docstring); raises nothing for a failed step."""
        previous = self.deployments.get(self.name).spec
        self.state = "running"
        outdated = self.deployments.begin_update(self.name, self.spec)
        self.total = len(outdated)
        try:
            for old in outdated:
                new = self.deployments.surge(self.name)
                self.started.append(new.id)
                self._wait_serving(new.id)
                if self.deployments.retire(self.name, old, "rollout"):
                    self.replaced.append(old)
        except (SchedulerError, _NotServing) as exc:
            self.error = str(exc)
            self.state = "failed"
            log.warning("rollout of %s stopped: %s", self.name, exc)
            self._undo(previous)
            return self
        self.state = "done"
        return self

    def _wait_serving(self, replica_id: str) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            state = self.deployments.readiness(self.name, replica_id)
            if state == "ready":
                return
            if state == "failed":
                raise _NotServing(f"new replica {replica_id} failed before serving")
            if time.monotonic() > deadline:
                raise _NotServing(f"new replica {replica_id} not serving within "
                                  f"{self.ready_timeout_s:g} s")
            time.sleep(self.poll_s)

    def _undo(self, previous: DeploymentSpec) -> None:
        """Release a new replica that never served and put the previous spec back."""
        if self.started and self.started[-1] not in self.replaced:
            last = self.started[-1]
            if self.deployments.readiness(self.name, last) != "ready":
                self.deployments.retire(self.name, last, "rollout-abort")
        if not self.replaced:
            self.deployments.revert_update(self.name, previous)

    def _run_logged(self, after: Callable[[Rollout], object] | None) -> None:
        try:
            self.run()
            if after is not None:
                after(self)
        except Exception as exc:  # noqa: BLE001 - a thread has no caller to raise to
            self.state, self.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("rollout of %s failed", self.name)


class _NotServing(Exception):
    """A new replica did not serve in time; the rollout stops there."""
