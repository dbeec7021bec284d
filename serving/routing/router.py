"""Which replica serves a request: the rulebook's decision for each replica's pool, then scores.

The router never picks a replica whose pool the policy denies: it filters
first, then ranks only the replicas left, by prefix affinity and load
(:mod:`serving.routing.scoring`) when a request brings its body, else by
fewest outstanding requests. Decisions are cached per (tenant, marking, flags,
model, caveats) for ``cache_ttl`` seconds and
dropped whenever the policy or the set of crisis declarations changes, so a
revoked declaration stops crossings within that time. Given a
:class:`scheduler.current_policy.CurrentPolicy`, the router reads the policy in
force at each request: a new bundle routes the very next request.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from policies import Decision, Declaration, Evaluation, Policy, Workload
from scheduler.current_policy import CurrentPolicy, current_of
from serving.routing.scoring import RoutingRequest, Scoring


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A live replica as the gateway sees it."""

    replica_id: str
    model: str
    pool: str
    jurisdiction: str
    node_id: str | None
    url: str  # base URL of its OpenAI-compatible server, e.g. http://127.0.0.1:8101


class EndpointSource(Protocol):
    """Where the gateway learns the live replicas (the scheduler's deployments)."""

    def endpoints(self) -> Sequence[Endpoint]: ...


@dataclass
class StaticEndpoints:
    """A fixed, replaceable list of endpoints (tests, and the adapter in ``corridor up``)."""

    items: list[Endpoint] = field(default_factory=list)

    def endpoints(self) -> Sequence[Endpoint]:
        return self.items


@dataclass(frozen=True)
class Route:
    """The replicas a request may go to, best first, and the evaluation that allowed them.

    ``evaluation`` names the routed workload itself (its ``id`` too), even when the
    verdicts came from the cache, so ``evaluation.id`` is this request's decision id
    (computed once per route).
    """

    candidates: list[Endpoint]
    evaluation: Evaluation
    scores: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # by replica id
    summary: str = ""  # the evaluation's summary, e.g. "1/4 pools: 2 RESIDENCY, …"

    @cached_property
    def decision_id(self) -> str:
        return self.evaluation.id

    def decision_for(self, endpoint: Endpoint) -> Decision:
        """The pool decision that allowed ``endpoint``, for this workload."""
        decision = next(d for d in self.evaluation.decisions if d.pool == endpoint.pool)
        return decision._replace(workload=self.evaluation.workload)


class Router:
    """Chooses replicas by policy, then by score (or fewest outstanding requests).

    ``replica_concurrency`` is how many requests this gateway keeps in flight on
    one replica before :meth:`has_room` says no (the admission queue waits then).
    """

    def __init__(self, policy: Policy | CurrentPolicy, source: EndpointSource, *,
                 declarations: Callable[[], Sequence[Declaration]] = tuple,
                 cache_ttl: float = 1.0, failure_backoff: float = 5.0,
                 scoring: Scoring | None = None, replica_concurrency: int = 256) -> None:
        self.current = current_of(policy)
        self.source = source
        self.declarations = declarations
        self.cache_ttl = cache_ttl
        self.failure_backoff = failure_backoff
        self.scoring = scoring or Scoring()
        self.replica_concurrency = replica_concurrency
        self.outstanding: dict[str, int] = self.scoring.board.outstanding
        self.on_release: Callable[[], None] | None = None  # e.g. the admission queue's offer
        self._failed_until: dict[str, float] = {}
        self._cache: dict[tuple, tuple[float, Evaluation, str]] = {}
        self._cache_key: tuple = ()

    @property
    def policy(self) -> Policy:
        """The policy in force."""
        return self.current.policy

    def evaluate(self, workload: Workload) -> Evaluation:
        """The workload against every pool of the bundle (cached for ``cache_ttl``)."""
        return self._evaluate(workload)[0]

    def _evaluate(self, workload: Workload) -> tuple[Evaluation, str]:
        policy = self.current.policy
        declarations = tuple(self.declarations())
        version = (policy.digest, tuple((d.id, d.revoked_at, len(d.approvals))
                                        for d in declarations))
        if version != self._cache_key:
            self._cache.clear()
            self._cache_key = version
        key = (workload.tenant, workload.marking.id, workload.data_flags, workload.model,
               workload.model_digest, workload.caveats)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        evaluation = policy.decide_all(workload, at=dt.datetime.now(dt.timezone.utc),
                                       declarations=declarations)
        if len(self._cache) > 10_000:
            self._cache.clear()
        summary = evaluation.summary()
        self._cache[key] = (now + self.cache_ttl, evaluation, summary)
        return evaluation, summary

    def route(self, workload: Workload, request: RoutingRequest | None = None) -> Route:
        """Allowed, live replicas of the workload's model, best first: ranked by the scorers
        when ``request`` is given and there is a choice, else fewest outstanding first.
        Replicas that only a crisis declaration allows come after every other (cross only
        when needed)."""
        evaluation, summary = self._evaluate(workload)
        allowed = {d.pool for d in evaluation.decisions if d.allowed}
        now = time.monotonic()
        candidates = [e for e in self.source.endpoints()
                      if e.model == workload.model and e.pool in allowed
                      and self._failed_until.get(e.replica_id, 0.0) <= now]
        crossing = {d.pool for d in evaluation.decisions if d.declaration}
        scores: Mapping[str, Mapping[str, float]] = {}
        if request is not None and len(candidates) > 1:
            candidates, scores = self.scoring.rank(request, candidates)
            if crossing:
                candidates.sort(key=lambda e: e.pool in crossing)  # stable: home first, by score
        elif crossing:
            candidates.sort(key=lambda e: (e.pool in crossing, self.outstanding.get(e.replica_id, 0)))
        else:
            candidates.sort(key=lambda e: self.outstanding.get(e.replica_id, 0))
        return Route(candidates, evaluation._replace(workload=workload), scores, summary)

    def has_room(self, endpoint: Endpoint) -> bool:
        """True when this gateway has fewer than ``replica_concurrency`` requests in flight there."""
        return self.outstanding.get(endpoint.replica_id, 0) < self.replica_concurrency

    def acquire(self, endpoint: Endpoint, request: RoutingRequest | None = None) -> None:
        """A request is sent to ``endpoint``: count it (and remember its prefix there)."""
        self.scoring.sent(endpoint.replica_id, request)

    def release(self, endpoint: Endpoint, request: RoutingRequest | None = None) -> None:
        """The request sent to ``endpoint`` ended (answered, failed or abandoned)."""
        self.scoring.done(endpoint.replica_id, request)
        if self.on_release is not None:
            self.on_release()

    def mark_failed(self, endpoint: Endpoint) -> None:
        """Keep a replica out of rotation for ``failure_backoff`` seconds after it failed."""
        self._failed_until[endpoint.replica_id] = time.monotonic() + self.failure_backoff
