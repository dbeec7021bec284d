"""Routing: scoring by prefix affinity and load beside fewest-outstanding, on two real vLLM replicas.

Two vLLM servers of the demo model, each engine bound to a core of its own (two
replicas on two GPUs would not share one), started as replicas start them
(engine statistics on, ``--max-model-len 2048``, prefix caching on), each with a
KV cache that holds about five of the workload's eight system prompts, sit in one allowed pool
(fr-paris) behind two gateways: one routes by **fewest outstanding** requests
(wave 1), the other by the **scores** (:mod:`serving.routing.scoring`). Two
workloads, each with Poisson arrivals, streaming chat requests and 8 generated
tokens each:

* ``shared prefix``: a handful of long system prompts (~1,200 tokens each),
  many short questions;
* ``no shared prefix``: every request its own long prompt.

Rounds alternate between the two gateways (same arrival times, fresh prompt
text every round so no cache carries over). Per workload and router, over all
its rounds: TTFT p50/p90 at the client, throughput (requests / time from first
send to last answer, the median round), and vLLM's prefix-cache hit rate
(``vllm:prefix_cache_hits_total`` over ``vllm:prefix_cache_queries_total``,
both replicas). The arrival rate is set above what the replicas sustain without
cache hits, so throughput shows what the hits buy.

Goals: on the shared-prefix workload, lower TTFT p90 and higher throughput than
fewest-outstanding; on the other, no worse than 5 %.

Run: python benchmarks/routing_bench.py [--requests N] [--rate R] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from policies.spillage import find_banners  # noqa: E402
from serving.loopback import free_port, wait_http  # noqa: E402

MODEL = "corridor-tiny"
TENANT = "fr-interior"
SYSTEM_PROMPTS = 8
SYSTEM_WORDS = 400  # about 1,200 tokens of the demo tokenizer
QUESTION_WORDS = 12
KV_CACHE_BYTES = 6 * 1024 * 1024  # demo model: 1 KiB per token: ~6,000 tokens, 5 of the 8 prefixes
MAX_TOKENS = 8


def run_gateway(upstreams: list[str], port: int, home: str, keys_path: str, scored: bool) -> None:
    """Child process: a gateway in front of both replicas; ``scored`` False routes by fewest
    outstanding requests only (the router as it was before scoring)."""
    import uvicorn

    from policies import Policy
    from scheduler.ledger import Ledger
    from serving.gateway import Authenticator, Gateway, KeyStore, create_app
    from serving.routing import Endpoint, Router, StaticEndpoints

    class FewestOutstanding(Router):
        def route(self, workload, request=None):
            return super().route(workload, None)

    policy = Policy.load()
    endpoints = StaticEndpoints([Endpoint(f"r{i}", MODEL, "fr-paris", "FR", f"node-{i}", url)
                                 for i, url in enumerate(upstreams)])
    router = (Router if scored else FewestOutstanding)(policy, endpoints)
    gateway = Gateway(policy=policy, ledger=Ledger.open(home), auth=Authenticator(KeyStore(Path(keys_path))),
                      router=router)
    uvicorn.run(create_app(gateway), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, loop="uvloop", http="httptools")


def start_server(model_path: Path, port: int, log: Path, core: int) -> subprocess.Popen:
    """One replica's vLLM server, its engine's threads bound to core ``core``: two replicas on
    one machine must not take each other's cores, as they would not on two GPUs."""
    from serving.replica.actor import OFFLINE_ENV

    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_path),
               "--served-model-name", MODEL, "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", "2048", "--max-num-seqs", "32",
               "--kv-cache-memory-bytes", str(KV_CACHE_BYTES)]
    env = {**os.environ, **OFFLINE_ENV, "VLLM_LOG_STATS_INTERVAL": "60",
           "VLLM_CPU_OMP_THREADS_BIND": str(core)}
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def words() -> list[str]:
    text = (ROOT / "serving" / "models" / "corpus.txt").read_text("utf-8")
    return [w for w in text.split() if w.isalpha()]


def workload(kind: str, n: int, seed: int, vocabulary: list[str]) -> list[list[dict[str, str]]]:
    """``n`` conversations: shared system prompts with short questions, or unique long prompts."""
    rng = random.Random(seed)

    def text(count: int) -> str:
        # A random run of words can spell a classification banner (the gateway then refuses the
        # request: 403 marking_spillage); draw again.
        while find_banners(value := " ".join(rng.choice(vocabulary) for _ in range(count))):
            pass
        return value

    if kind == "shared prefix":
        systems = [f"[{seed}-{k}] " + text(SYSTEM_WORDS) for k in range(SYSTEM_PROMPTS)]
        return [[{"role": "system", "content": rng.choice(systems)},
                 {"role": "user", "content": text(QUESTION_WORDS) + " ?"}] for _ in range(n)]
    return [[{"role": "user", "content": f"[{seed}-{i}] " + text(SYSTEM_WORDS + QUESTION_WORDS)}]
            for i in range(n)]


def error_code(body: bytes) -> str:
    """The OpenAI-style error code of a refused request's body, or what the body starts with."""
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return body[:60].decode("utf-8", "replace")


async def prefix_counters(session: aiohttp.ClientSession, upstreams: list[str]) -> tuple[float, float]:
    hits = queries = 0.0
    for url in upstreams:
        async with session.get(url + "/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith("vllm:prefix_cache_hits_total"):
                    hits += float(line.rsplit(" ", 1)[1])
                elif line.startswith("vllm:prefix_cache_queries_total"):
                    queries += float(line.rsplit(" ", 1)[1])
    return hits, queries


async def one_round(gateway: str, key: str, conversations, arrivals: list[float],
                    upstreams: list[str]) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}", "X-Corridor-Marking": "DR"}
    ttfts: list[float] = []
    failures = 0
    reasons: Counter[str] = Counter()  # "status code" of each failure, e.g. "503 no_replica_available"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=600)) as session:
        hits0, queries0 = await prefix_counters(session, upstreams)

        async def request(delay: float, messages) -> float:
            nonlocal failures
            await asyncio.sleep(delay)
            sent = time.perf_counter()
            body = {"model": MODEL, "messages": messages, "max_tokens": MAX_TOKENS, "stream": True,
                    "temperature": 0.0, "ignore_eos": True}
            async with session.post(gateway + "/v1/chat/completions", json=body, headers=headers) as answer:
                if answer.status != 200:
                    failures += 1
                    reasons[f"{answer.status} {error_code(await answer.read())}"] += 1
                    return time.perf_counter()
                first = True
                async for _ in answer.content.iter_any():
                    if first:
                        ttfts.append(time.perf_counter() - sent)
                        first = False
            return time.perf_counter()

        started = time.perf_counter()
        ends = await asyncio.gather(*(request(a, c) for a, c in zip(arrivals, conversations)))
        elapsed = max(ends) - started
        await asyncio.sleep(1.5)  # vLLM publishes its counters on its stats interval
        hits1, queries1 = await prefix_counters(session, upstreams)
    ttfts.sort()
    return {"p50": statistics.median(ttfts), "p90": ttfts[int(0.9 * (len(ttfts) - 1))],
            "rps": len(conversations) / elapsed, "failures": failures, "reasons": reasons, "ttfts": ttfts,
            "hits": hits1 - hits0, "queries": queries1 - queries0,
            "hit_rate": (hits1 - hits0) / max(queries1 - queries0, 1.0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per round")
    parser.add_argument("--rate", type=float, default=16.0, help="Poisson arrivals per second")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per router and workload")
    args = parser.parse_args()

    from serving.gateway import KeyStore
    from serving.models.demo import build_demo_model

    work = Path(tempfile.mkdtemp(prefix="corridor-routing-bench-"))
    model_path = build_demo_model(work / "models" / MODEL)
    keys_path = work / "keys.json"
    key = KeyStore(keys_path).issue("app", tenant=TENANT)
    ports = [free_port(), free_port()]
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0, 1]
    servers = [start_server(model_path, port, work / f"vllm-{i}.log", cores[i % len(cores)])
               for i, port in enumerate(ports)]
    upstreams = [f"http://127.0.0.1:{port}" for port in ports]
    gateways: dict[str, tuple[str, multiprocessing.Process]] = {}
    try:
        for url in upstreams:
            wait_http(url + "/health", 900)
        context = multiprocessing.get_context("spawn")
        for name, scored in (("fewest-outstanding", False), ("scored", True)):
            port = free_port()
            home = work / name
            home.mkdir()
            process = context.Process(target=run_gateway, args=(upstreams, port, str(home), str(keys_path),
                                                                scored), daemon=True)
            process.start()
            gateways[name] = (f"http://127.0.0.1:{port}", process)
        for url, _ in gateways.values():
            wait_http(url + "/healthz", 120)
        vocabulary = words()
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for kind in ("shared prefix", "no shared prefix"):
            for n in range(args.rounds):
                rng = random.Random(1000 + n)
                arrivals = list(_poisson(rng, args.rate, args.requests))
                order = list(gateways) if n % 2 == 0 else list(gateways)[::-1]
                for name in order:
                    seed = hash((kind, n, name)) & 0xFFFF
                    conversations = workload(kind, args.requests, seed, vocabulary)
                    result = asyncio.run(one_round(gateways[name][0], key, conversations, arrivals, upstreams))
                    results.setdefault((kind, name), []).append(result)
                    print(f"{kind:<17} round {n + 1} {name:<19} TTFT p50 {result['p50'] * 1e3:7.0f} ms  "
                          f"p90 {result['p90'] * 1e3:7.0f} ms  {result['rps']:5.2f} req/s  "
                          f"hit rate {result['hit_rate']:5.1%}  failures {result['failures']}"
                          + (" (" + ", ".join(f"{count} × {reason}" for reason, count
                                               in result["reasons"].items()) + ")"
                             if result["reasons"] else ""), flush=True)
                    time.sleep(2.0)
    finally:
        for _, process in gateways.values():
            process.terminate()
            process.join(30)
        for server in servers:
            os.killpg(server.pid, signal.SIGTERM)
        for server in servers:
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.requests} streaming chat requests per round, Poisson {args.rate:g}/s, {MAX_TOKENS} tokens each, "
          f"2 replicas; {args.rounds} rounds each, pooled")
    print(f"{'workload':<17} {'router':<19} {'TTFT p50':>9} {'p90':>8} {'req/s':>7} {'hit rate':>9}")
    for kind in ("shared prefix", "no shared prefix"):
        pooled = {}
        for name in gateways:
            rounds = results[(kind, name)]
            ttfts = sorted(t for r in rounds for t in r["ttfts"])
            r = pooled[name] = {"p50": statistics.median(ttfts), "p90": ttfts[int(0.9 * (len(ttfts) - 1))],
                                "rps": statistics.median(x["rps"] for x in rounds),
                                "hit_rate": sum(x["hits"] for x in rounds) / max(sum(x["queries"] for x in rounds), 1)}
            print(f"{kind:<17} {name:<19} {r['p50'] * 1e3:>7.0f}ms {r['p90'] * 1e3:>6.0f}ms {r['rps']:>7.2f} "
                  f"{r['hit_rate']:>9.1%}")
        base, scored = pooled["fewest-outstanding"], pooled["scored"]
        print(f"{kind:<17} ratio scored / fewest-outstanding: TTFT p90 {scored['p90'] / base['p90']:.2f}, "
              f"throughput {scored['rps'] / base['rps']:.2f}")
    print("goals: shared prefix: TTFT p90 ratio < 1 and throughput ratio > 1; "
          "no shared prefix: TTFT p90 ratio <= 1.05 and throughput ratio >= 0.95")
    return 0


def _poisson(rng: random.Random, rate: float, n: int):
    at = 0.0
    for _ in range(n):
        yield at
        at += rng.expovariate(rate)


if __name__ == "__main__":
    sys.exit(main())
