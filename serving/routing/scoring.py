"""Scoring the replicas the rulebook allows: prefix affinity and load, as small plugins.

The router filters first (the rulebook's decision per pool, live replicas of
the model); only the replicas left are scored, never others. Each
:class:`Scorer` gives every candidate a value in ``[0, 1]`` (higher is
better); the weighted sum ranks them, ties broken at random. The defaults,
after the weights of llm-d's inference scheduler (prefix 3, queue 1, KV cache 1):

``prefix``    leading prefix blocks the replica probably holds, over the request's
              blocks (:mod:`~serving.routing.prefix_index`);
``tokens``    estimated tokens in flight from this gateway, relative to the busiest
              candidate (prompt characters / 4 + ``max_tokens``);
``queue``     requests waiting in the engine (``vllm:num_requests_waiting``, corrected by
              what this gateway sent since the reading), min–max normalised over the
              candidates; the gateway's own count when unknown;
``kv_cache``  one minus ``vllm:kv_cache_usage_perc``.

**Load-imbalance guard**: a candidate whose load (:meth:`LoadBoard.load`)
exceeds the least loaded candidate's by more than ``imbalance_slack`` requests
*and* by a factor ``imbalance_ratio`` loses its prefix affinity for this
request, so affinity piles no more than those bounds on one replica: beyond them the load
scorers decide.

Work that does not depend on the candidate (hashing the prompt, the guard's
minimum) is done once per request, in a :class:`ScoringCycle`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from serving.routing.load import LoadBoard
from serving.routing.prefix_index import PrefixIndex
from serving.routing.settings import RoutingSettings


@dataclass(slots=True)
class RoutingRequest:
    """What scorers know of one request: model, the tenant's cache namespace, the text that
    forms its prompt (the leading part only) and its estimated tokens."""

    model: str
    namespace: str
    text: str
    tokens: int
    hashes: tuple[int, ...] | None = None  # computed once, when first scored

    @classmethod
    def of(cls, model: str, namespace: str, payload: Mapping[str, Any], *, limit: int,
           output_guess: int) -> RoutingRequest:
        """From an OpenAI request body (chat ``messages``, completion ``prompt``, or ``input``).

        >>> r = RoutingRequest.of("m", "t", {"messages": [{"role": "user", "content": "Bonjour"}],
        ...                                  "max_tokens": 10}, limit=1000, output_guess=256)
        >>> (r.text, r.tokens)
        ('user\\x1fBonjour\\x1e', 13)
        """
        text = prompt_text(payload, limit)
        out = payload.get("max_completion_tokens") or payload.get("max_tokens")
        out = out if isinstance(out, int) and not isinstance(out, bool) and out > 0 else output_guess
        return cls(model, namespace, text, len(text) // 4 + out)


def prompt_text(payload: Mapping[str, Any], limit: int) -> str:
    """The leading ``limit`` characters of the prompt a request carries, messages joined with
    their roles (so the same words under another role do not match)."""
    messages = payload.get("messages")
    if isinstance(messages, list):
        parts: list[str] = []
        size = 0
        for message in messages:
            if not isinstance(message, dict):
                continue
            content = message.get("content")
            if isinstance(content, list):
                content = "".join(p.get("text", "") for p in content
                                  if isinstance(p, dict) and isinstance(p.get("text"), str))
            part = f"{message.get('role')}\x1f{content if isinstance(content, str) else ''}\x1e"
            parts.append(part)
            size += len(part)
            if size >= limit:
                break
        return "".join(parts)[:limit]
    for key in ("prompt", "input"):
        value = payload.get(key)
        if isinstance(value, list) and value and isinstance(value[0], str):
            value = value[0]
        if isinstance(value, str):
            return value[:limit]
    return ""


@dataclass(eq=False)
class ScoringCycle:
    """One request against its candidates; what every scorer shares."""

    request: RoutingRequest
    candidates: Sequence[Any]  # endpoints with a ``replica_id``
    board: LoadBoard
    index: PrefixIndex
    loads: list[float] = field(default_factory=list)
    guarded: list[bool] = field(default_factory=list)


class Scorer(Protocol):
    """Scores each candidate in ``[0, 1]``, higher is better; multiplied by ``weight``."""

    name: str
    weight: float

    def score(self, cycle: ScoringCycle) -> list[float]: ...


class PrefixAffinity:
    name = "prefix"

    def __init__(self, weight: float = 3.0) -> None:
        self.weight = weight

    def score(self, cycle: ScoringCycle) -> list[float]:
        hashes = cycle.request.hashes or ()
        if not hashes:
            return [0.0] * len(cycle.candidates)
        total = len(hashes)
        return [0.0 if guarded else cycle.index.matched(e.replica_id, hashes) / total
                for e, guarded in zip(cycle.candidates, cycle.guarded)]


class InFlightTokens:
    name = "tokens"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def score(self, cycle: ScoringCycle) -> list[float]:
        tokens = [cycle.board.tokens.get(e.replica_id, 0) for e in cycle.candidates]
        most = max(tokens)
        return [1.0 if most == 0 else (most - t) / most for t in tokens]


class EngineQueue:
    name = "queue"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def score(self, cycle: ScoringCycle) -> list[float]:
        queued = [cycle.board.queued(e.replica_id) for e in cycle.candidates]
        low, high = min(queued), max(queued)
        return [1.0 if high == low else (high - q) / (high - low) for q in queued]


class KvCacheUsage:
    name = "kv_cache"

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def score(self, cycle: ScoringCycle) -> list[float]:
        out = []
        for e in cycle.candidates:
            reading = cycle.board.engine(e.replica_id)
            out.append(0.5 if reading is None else min(1.0, max(0.0, 1.0 - reading.kv_usage)))
        return out


_PLUGINS = {"prefix": PrefixAffinity, "tokens": InFlightTokens, "queue": EngineQueue,
            "kv_cache": KvCacheUsage}


def scorers_from(weights: Mapping[str, float]) -> list[Scorer]:
    """The scorers named in ``weights`` (see :data:`serving.routing.settings.SCORER_NAMES`),
    skipping those weighted 0."""
    unknown = sorted(set(weights) - set(_PLUGINS))
    if unknown:
        raise ValueError(f"weights: unknown scorer(s) {unknown}; known: {sorted(_PLUGINS)}, "
                         f"e.g. {{'prefix': 3, 'queue': 1}}")
    return [_PLUGINS[name](weight) for name, weight in weights.items() if weight > 0]


class Scoring:
    """Ranks candidates by the weighted scores; keeps the prefix index and the load board."""

    def __init__(self, settings: RoutingSettings = RoutingSettings(), *,
                 board: LoadBoard | None = None, scorers: Sequence[Scorer] | None = None,
                 rng: random.Random | None = None) -> None:
        self.settings = settings
        self.board = board or LoadBoard()
        self.index = PrefixIndex(block_chars=settings.block_chars, max_blocks=settings.max_blocks,
                                 capacity=settings.index_blocks_per_replica)
        self.scorers = list(scorers_from(settings.weights) if scorers is None else scorers)
        self.rng = rng or random.Random()

    def request(self, model: str, namespace: str, payload: Mapping[str, Any]) -> RoutingRequest:
        """The routing view of a request body (who calls: the gateway's inference routes)."""
        settings = self.settings
        return RoutingRequest.of(model, namespace, payload,
                                 limit=settings.block_chars * settings.max_blocks,
                                 output_guess=settings.output_tokens_guess)

    def rank(self, request: RoutingRequest, candidates: Sequence[Any]
             ) -> tuple[list[Any], dict[str, dict[str, float]]]:
        """Candidates best first, and the score components of each (by replica id)."""
        if request.hashes is None:
            request.hashes = self.index.hashes(request.model, request.namespace, request.text)
        cycle = ScoringCycle(request, candidates, self.board, self.index)
        cycle.loads = [self.board.load(e.replica_id) for e in candidates]
        least = min(cycle.loads)
        slack, ratio = self.settings.imbalance_slack, self.settings.imbalance_ratio
        cycle.guarded = [load - least > slack and load > least * ratio for load in cycle.loads]
        totals = [0.0] * len(candidates)
        components: list[dict[str, float]] = [{} for _ in candidates]
        for scorer in self.scorers:
            for i, value in enumerate(scorer.score(cycle)):
                totals[i] += scorer.weight * value
                components[i][scorer.name] = round(value, 4)
        tiebreak = [self.rng.random() for _ in candidates]
        order = sorted(range(len(candidates)), key=lambda i: (-round(totals[i], 9), tiebreak[i]))
        details = {}
        for i, e in enumerate(candidates):
            details[e.replica_id] = {**components[i], "total": round(totals[i], 4),
                                     "load": cycle.loads[i], **({"guarded": 1.0} if cycle.guarded[i] else {})}
        return [candidates[i] for i in order], details

    def sent(self, replica_id: str, request: RoutingRequest | None) -> None:
        """A request went to the replica: count it, and remember its prefix there."""
        if request is None:
            self.board.sent(replica_id, 0)
            return
        self.board.sent(replica_id, request.tokens)
        if request.hashes is None and self.settings.weights.get("prefix", 0) > 0:
            request.hashes = self.index.hashes(request.model, request.namespace, request.text)
        if request.hashes:
            self.index.record(replica_id, request.hashes)

    def done(self, replica_id: str, request: RoutingRequest | None) -> None:
        self.board.done(replica_id, request.tokens if request is not None else 0)
