"""Admission queue: a steady tenant's wait while another tenant floods, with and without the queue.

One upstream that behaves like a busy replica: ``--slots`` requests at a time,
each taking ``--service-ms`` on average (uniformly 0.5x to 1.5x: answers differ
in length), the rest waiting in its own first-come queue (as a vLLM engine
queues). Two gateways in front of it, in their own processes:

* **queue**: the admission queue, ``replica_concurrency`` = the replica's slots
  (requests wait at the gateway, tenants served in turn, bounded per tenant);
* **no queue**: every request sent at once (the replica's FIFO decides), as
  before the admission queue.

Phases alternate, both gateways: the steady tenant alone (``--steady`` requests/s,
Poisson), then the same with a second tenant flooding at ten times its fair
share of the replica. Per gateway it prints the steady tenant's p50/p99 latency
unloaded and under the flood, their ratio, and every answer's fate: a request is
*lost* unless answered 200, or 429/503 with ``Retry-After``.

Goals (queue): steady p99 under the flood <= 2x its unloaded p99; 0 requests lost.

Run: python benchmarks/queue_bench.py [--seconds S] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving.loopback import free_port, wait_http  # noqa: E402

MODEL = "corridor-tiny"
STEADY, FLOODER = "fr-interior", "eu-agency"


def busy_replica(slots: int, service_s: float):
    """An ASGI upstream serving ``slots`` requests at a time, ``service_s`` each on average, FIFO."""
    answer = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": 0,
                         "model": MODEL, "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant", "content": "ok"}}],
                         "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()
    gate: asyncio.Semaphore | None = None
    rng = random.Random(7)

    async def app(scope, receive, send) -> None:
        nonlocal gate
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        if scope["path"] == "/v1/chat/completions":
            gate = gate or asyncio.Semaphore(slots)
            async with gate:
                await asyncio.sleep(service_s * rng.uniform(0.5, 1.5))
            status, body = 200, answer
        else:
            status, body = (200, b"") if scope["path"] == "/health" else (404, b"{}")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return app


def run_replica(port: int, slots: int, service_s: float) -> None:
    import uvicorn

    uvicorn.run(busy_replica(slots, service_s), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, loop="uvloop", http="httptools")


def run_gateway(upstream: str, port: int, home: str, keys_path: str, slots: int | None) -> None:
    """Child process: a gateway in front of the replica; ``slots`` None: no admission queue."""
    import uvicorn

    from policies import Policy
    from scheduler.ledger import Ledger
    from serving.gateway import Authenticator, Gateway, KeyStore, create_app
    from serving.routing import Endpoint, Router, StaticEndpoints
    from serving.routing.settings import QueueSettings

    policy = Policy.load()
    endpoints = StaticEndpoints([Endpoint("busy", MODEL, "fr-paris", "FR", "node-bench", upstream)])
    queue = QueueSettings(replica_concurrency=slots or 1_000_000, timeout_s=10.0,
                          max_waiting_per_tenant=64, max_waiting=256)
    gateway = Gateway(policy=policy, ledger=Ledger.open(home), auth=Authenticator(KeyStore(Path(keys_path))),
                      router=Router(policy, endpoints), queue=queue)
    uvicorn.run(create_app(gateway), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, loop="uvloop", http="httptools")


async def phase(gateway: str, keys: dict[str, str], seconds: float, steady_rate: float,
                flood_rate: float, seed: int) -> tuple[list[float], Counter]:
    """Poisson arrivals of both tenants for ``seconds``; the steady tenant's latencies (200s) and
    the outcome of every request."""
    rng = random.Random(seed)
    outcomes: Counter = Counter()
    steady_latency: list[float] = []
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Bonjour"}],
                       "max_tokens": 4}).encode()

    def arrivals(rate: float) -> list[float]:
        times, at = [], rng.expovariate(rate) if rate else seconds
        while at < seconds:
            times.append(at)
            at += rng.expovariate(rate)
        return times

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def one(delay: float, tenant: str) -> None:
            await asyncio.sleep(delay)
            headers = {"Authorization": f"Bearer {keys[tenant]}", "Content-Type": "application/json",
                       "X-Corridor-Marking": "PUBLIC"}
            sent = time.perf_counter()
            try:
                async with session.post(gateway + "/v1/chat/completions", data=body,
                                        headers=headers) as answer:
                    await answer.read()
                    status, retry = answer.status, answer.headers.get("Retry-After")
            except (aiohttp.ClientError, asyncio.TimeoutError):
                outcomes["lost (no answer)"] += 1
                return
            if status == 200:
                outcomes[f"{tenant}: 200"] += 1
                if tenant == STEADY:
                    steady_latency.append(time.perf_counter() - sent)
            elif status in (429, 503) and retry:
                outcomes[f"{tenant}: {status} + Retry-After"] += 1
            else:
                outcomes[f"lost ({status}{' without Retry-After' if status in (429, 503) else ''})"] += 1

        await asyncio.gather(*[one(a, STEADY) for a in arrivals(steady_rate)],
                             *[one(a, FLOODER) for a in arrivals(flood_rate)])
    return steady_latency, outcomes


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--slots", type=int, default=4, help="requests the replica serves at once")
    parser.add_argument("--service-ms", type=float, default=100.0, help="time per request")
    parser.add_argument("--steady", type=float, default=8.0, help="steady tenant, requests/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a phase")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from serving.gateway import KeyStore

    capacity = args.slots / (args.service_ms / 1000)
    flood = 10 * capacity / 2  # ten times a fair half of the replica
    work = Path(tempfile.mkdtemp(prefix="corridor-queue-bench-"))
    store = KeyStore(work / "keys.json")
    keys = {tenant: store.issue("app", tenant=tenant) for tenant in (STEADY, FLOODER)}
    context = multiprocessing.get_context("spawn")
    replica_port = free_port()
    children = [context.Process(target=run_replica, args=(replica_port, args.slots, args.service_ms / 1000),
                                daemon=True)]
    gateways = {}
    for name, slots in (("queue", args.slots), ("no queue", None)):
        port = free_port()
        (work / name).mkdir()
        children.append(context.Process(target=run_gateway, daemon=True, args=(
            f"http://127.0.0.1:{replica_port}", port, str(work / name), str(work / "keys.json"), slots)))
        gateways[name] = f"http://127.0.0.1:{port}"
    results: dict[tuple[str, str], list[float]] = {}
    fates: dict[str, Counter] = {name: Counter() for name in gateways}
    try:
        for child in children:
            child.start()
        wait_http(f"http://127.0.0.1:{replica_port}/health", 60)
        for url in gateways.values():
            wait_http(url + "/healthz", 60)
        print(f"replica: {args.slots} slots × {args.service_ms:g} ms = {capacity:g} requests/s; steady "
              f"{args.steady:g}/s, flood {flood:g}/s; {args.seconds:g} s phases", flush=True)
        for n in range(args.rounds):
            for name, url in (gateways.items() if n % 2 == 0 else list(gateways.items())[::-1]):
                for load, rate in (("unloaded", 0.0), ("flooded", flood)):
                    latency, outcomes = asyncio.run(phase(url, keys, args.seconds, args.steady, rate, seed=n))
                    results.setdefault((name, load), []).extend(latency)
                    fates[name].update(outcomes)
                    print(f"round {n + 1} {name:<9} {load:<9} steady p50 {statistics.median(latency) * 1e3:7.1f} ms "
                          f"p99 {p99(latency) * 1e3:7.1f} ms  ({len(latency)} answered)", flush=True)
                    time.sleep(1.0)
    finally:
        for child in children:
            child.terminate()
            child.join(10)
    print(f"\n{'gateway':<10} {'steady p99 unloaded':>20} {'flooded':>9} {'ratio':>6}   fates")
    for name in gateways:
        quiet, loud = p99(results[(name, "unloaded")]), p99(results[(name, "flooded")])
        lost = sum(v for k, v in fates[name].items() if k.startswith("lost"))
        print(f"{name:<10} {quiet * 1e3:>17.1f} ms {loud * 1e3:>6.1f} ms {loud / quiet:>6.2f}   "
              f"lost {lost}; " + ", ".join(f"{k} {v}" for k, v in sorted(fates[name].items())))
    print("goal (queue): flooded/unloaded steady p99 <= 2.0, 0 lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
