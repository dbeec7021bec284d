"""Scoring inside the allowed set: prefix affinity, load, the imbalance guard, the rulebook first."""

from __future__ import annotations

import asyncio
import doctest
import random

import pytest

from policies import Policy, Workload
from serving.config import ConfigError, load_run_config
from serving.routing import Endpoint, Router, StaticEndpoints
from serving.routing import load as load_module
from serving.routing import prefix_index as prefix_module
from serving.routing import scoring as scoring_module
from serving.routing.load import EngineLoad, LoadBoard, MetricsPoller
from serving.routing.prefix_index import PrefixIndex
from serving.routing.scoring import RoutingRequest, Scoring, scorers_from
from serving.routing.settings import RoutingSettings

SYSTEM = "Vous êtes l'assistant juridique du ministère. " * 20  # a long shared system prompt


def replica(name: str, pool: str = "fr-paris") -> Endpoint:
    return Endpoint(name, "corridor-tiny", pool, "FR" if pool.startswith("fr-") else "DE",
                    f"node-{name}", f"http://{name}")


def chat(question: str, system: str = SYSTEM) -> dict:
    return {"model": "corridor-tiny", "max_tokens": 16,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}


def scoring(**settings) -> Scoring:
    return Scoring(RoutingSettings(**settings), rng=random.Random(7))


def test_the_modules_examples_hold() -> None:
    for module in (prefix_module, load_module, scoring_module):
        assert doctest.testmod(module).failed == 0


def test_affinity_wins_when_loads_are_equal() -> None:
    s = scoring()
    a, b = replica("a"), replica("b")
    first = s.request("corridor-tiny", "fr-interior", chat("Quel délai de recours ?"))
    s.rank(first, [a, b])
    s.sent("b", first)
    s.done("b", first)  # answered: both replicas equally idle again
    ranked, scores = s.rank(s.request("corridor-tiny", "fr-interior", chat("Et en appel ?")), [a, b])
    assert [e.replica_id for e in ranked] == ["b", "a"]
    assert scores["b"]["prefix"] > 0.9 and scores["a"]["prefix"] == 0
    assert scores["a"]["load"] == scores["b"]["load"] == 0


def test_load_wins_when_the_imbalance_passes_the_guard() -> None:
    s = scoring(imbalance_slack=4, imbalance_ratio=1.5)
    a, b = replica("a"), replica("b")
    warm = s.request("corridor-tiny", "fr-interior", chat("Quel délai ?"))
    s.rank(warm, [a, b])
    for _ in range(6):  # b holds the prefix and six requests; a holds nothing
        s.sent("b", warm)
    ranked, scores = s.rank(s.request("corridor-tiny", "fr-interior", chat("Et en appel ?")), [a, b])
    assert [e.replica_id for e in ranked] == ["a", "b"]
    assert scores["b"]["guarded"] == 1.0 and scores["b"]["prefix"] == 0.0


def test_affinity_still_wins_below_the_guard() -> None:
    s = scoring(imbalance_slack=4, imbalance_ratio=1.5)
    a, b = replica("a"), replica("b")
    warm = s.request("corridor-tiny", "fr-interior", chat("Quel délai ?"))
    s.rank(warm, [a, b])
    for _ in range(3):  # within the slack: a cached prefix is worth three queued requests
        s.sent("b", warm)
    ranked, scores = s.rank(s.request("corridor-tiny", "fr-interior", chat("Et en appel ?")), [a, b])
    assert ranked[0].replica_id == "b" and "guarded" not in scores["b"]


def test_engine_load_from_metrics_counts_in_the_guard_and_the_queue_scorer() -> None:
    s = scoring()
    a, b = replica("a"), replica("b")
    s.board.record("a", EngineLoad(waiting=20, running=8, kv_usage=0.9, read_at=s.board.clock()))
    s.board.record("b", EngineLoad(waiting=0, running=2, kv_usage=0.1, read_at=s.board.clock()))
    ranked, scores = s.rank(s.request("corridor-tiny", "t", chat("x")), [a, b])
    assert ranked[0].replica_id == "b"
    assert scores["a"]["queue"] == 0.0 and scores["b"]["queue"] == 1.0
    assert scores["b"]["kv_cache"] == pytest.approx(0.9)


def test_a_reading_half_a_second_old_does_not_send_everything_to_the_replica_that_looked_idle() -> None:
    s = scoring()
    a, b = replica("a"), replica("b")
    s.board.record("a", EngineLoad(waiting=0, running=1, kv_usage=0.2, read_at=s.board.clock()))
    s.board.record("b", EngineLoad(waiting=2, running=1, kv_usage=0.3, read_at=s.board.clock()))
    chosen = []
    for n in range(8):  # no new reading meanwhile: what this gateway sent must count
        request = s.request("corridor-tiny", "t", chat(f"question {n}", system=f"prompt {n}"))
        best = s.rank(request, [a, b])[0][0]
        s.sent(best.replica_id, request)
        chosen.append(best.replica_id)
    assert chosen.count("a") <= 6 and "b" in chosen


def test_two_tenants_never_share_a_prefix() -> None:
    s = scoring()
    a, b = replica("a"), replica("b")
    s.sent("b", s.request("corridor-tiny", "fr-interior", chat("Quel délai ?")))
    _, scores = s.rank(s.request("corridor-tiny", "fr-health", chat("Quel délai ?")), [a, b])
    assert scores["b"]["prefix"] == 0.0


def test_ties_are_broken_at_random() -> None:
    s = scoring()
    a, b = replica("a"), replica("b")
    firsts = {s.rank(s.request("corridor-tiny", "t", chat("x")), [a, b])[0][0].replica_id
              for _ in range(40)}
    assert firsts == {"a", "b"}


def test_the_prefix_index_is_a_bounded_lru() -> None:
    index = PrefixIndex(block_chars=4, max_blocks=100, capacity=10)
    old = index.hashes("m", "t", "a" * 40)
    index.record("r", old)
    index.record("r", index.hashes("m", "t", "b" * 40))
    assert index.size("r") == 10 and index.matched("r", old) == 0


def test_weights_come_from_configuration_and_a_zero_weight_turns_a_scorer_off(tmp_path) -> None:
    path = tmp_path / "corridor.yaml"
    path.write_text("routing:\n  weights: {prefix: 5, queue: 0}\n", "utf-8")
    config = load_run_config(path, tmp_path)
    assert [(s.name, s.weight) for s in scorers_from(config.routing.weights)] == [("prefix", 5)]
    path.write_text("routing:\n  weights: {prefixe: 5}\n", "utf-8")
    with pytest.raises(ConfigError, match="unknown scorer 'prefixe'"):
        load_run_config(path, tmp_path)


def workload(tenant: str, marking: str) -> Workload:
    return Workload.create(tenant, marking, model="corridor-tiny")


DENIED = {
    "a German replica never appears for French DR data, however idle and warm it is":
        ("fr-interior", "DR", "de-frankfurt", ["paris"]),
    "a Lyon replica never appears for DR data (Lyon lacks dr-homologation)":
        ("fr-interior", "DR", "fr-lyon", ["paris"]),
    "a Paris replica never appears for VS-NfD data of the German provider":
        ("de-federal-it", "VS-NfD", "fr-paris", ["frankfurt"]),
}


@pytest.mark.parametrize("case", DENIED.values(), ids=DENIED.keys())
def test_a_replica_the_rulebook_denies_never_appears_however_good_its_score(
        case, default_policy: Policy) -> None:
    tenant, marking, denied_pool, expected = case
    paris, frankfurt = replica("paris", "fr-paris"), replica("frankfurt", "de-frankfurt")
    tempting = replica("tempting", denied_pool)
    router = Router(default_policy, StaticEndpoints([paris, frankfurt, tempting]),
                    scoring=scoring())
    request = router.scoring.request("corridor-tiny", tenant, chat("Quel délai ?"))
    router.scoring.sent("tempting", request)
    router.scoring.done("tempting", request)  # warm, idle: the best score there is
    for name in ("paris", "frankfurt"):
        for _ in range(50):
            router.scoring.sent(name, None)  # and every allowed replica is swamped
    route = router.route(workload(tenant, marking), request)
    assert [e.replica_id for e in route.candidates] == expected
    assert "tempting" not in route.scores


def test_a_national_only_caveat_is_decided_afresh_not_read_from_another_requests_cached_verdict(
        default_policy: Policy) -> None:
    from policies import Declaration

    from gateway_stack import active_declaration

    crossing = Declaration.model_validate(active_declaration("decl-paris-down", "fr-interior", "DR"))
    router = Router(default_policy, StaticEndpoints([replica("frankfurt", "de-frankfurt")]),
                    declarations=lambda: [crossing], cache_ttl=60)
    plain = router.route(workload("fr-interior", "DR"))
    assert [e.replica_id for e in plain.candidates] == ["frankfurt"]  # the declaration crosses
    national = Workload.create("fr-interior", "DR", model="corridor-tiny", caveats="SPECIAL FRANCE")
    route = router.route(national)
    assert route.candidates == []
    assert "CAVEAT_NATIONAL_ONLY" in route.evaluation.tally()


def test_the_poller_reads_vllm_gauges_and_backs_off_a_replica_without_them() -> None:
    page = ("vllm:num_requests_waiting{engine=\"0\"} 2.0\nvllm:num_requests_running{engine=\"0\"} 3.0\n"
            "vllm:kv_cache_usage_perc{engine=\"0\"} 0.5\nvllm:prefix_cache_hits_total{engine=\"0\"} 40.0\n"
            "vllm:prefix_cache_queries_total{engine=\"0\"} 80.0\n").encode()
    asked: list[str] = []

    class Reader:
        async def get(self, url: str, timeout: float) -> tuple[int, bytes]:
            asked.append(url)
            return (200, page) if url.startswith("http://vllm") else (404, b"")

    board = LoadBoard()
    poller = MetricsPoller(board, lambda: [("v", "http://vllm"), ("s", "http://stub")], Reader())
    asyncio.run(poller.poll_once())
    asyncio.run(poller.poll_once())
    assert board.engine("v") == EngineLoad(2.0, 3.0, 0.5, 80.0, 40.0, board.engines["v"].read_at)
    assert board.load("v") == 5.0 and board.engine("s") is None
    assert asked.count("http://stub/metrics") == 1  # quiet for retry_s after a page without gauges


def test_a_request_counts_prompt_and_output_tokens() -> None:
    r = RoutingRequest.of("m", "t", {"prompt": "x" * 400, "max_tokens": 50}, limit=16_384,
                          output_guess=256)
    assert r.tokens == 150
    r = RoutingRequest.of("m", "t", {"input": ["y" * 40]}, limit=16_384, output_guess=256)
    assert (r.text, r.tokens) == ("y" * 40, 266)
