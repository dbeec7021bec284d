"""Gateway cost: the same requests sent directly to an upstream and through the gateway.

Two upstreams, each measured in the same run against itself:

* ``stub``: a minimal OpenAI-compatible server that answers instantly, to
  isolate the gateway's own cost at high request rates;
* ``vllm``: a real vLLM CPU server with the demo model (about a minute to start).

For concurrency 1, 16 and 64, streaming and not, it prints p50/p99 latency
direct and through the gateway, the added latency, the throughput ratio and,
for streaming, the time-to-first-token difference; and the CPU time the gateway
process spent per request (all its threads, ledger writer included, read from
``/proc``) beside what the upstream process spent per request in the same rounds. The gateway runs as it does
in production: its own process, policy decisions, a durable ledger entry per
request (group commit), Prometheus metrics. Upstream, gateway and load
generator share this machine's cores, so read ratios, not absolutes.

Goals: added p50 <= 1 ms, p99 <= 5 ms; throughput >= 0.95 of direct;
>= 1,000 requests/s through the gateway against the stub; gateway CPU per request
<= 0.2 ms at concurrency 64 against the stub.

Run: python benchmarks/gateway_bench.py [--upstream stub|vllm|both] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from serving.loopback import free_port, wait_http  # noqa: E402






def start_stub(port: int) -> subprocess.Popen:
    """The instant upstream (``tests/stub_upstream.py``) in its own process, answering on ``port``."""
    process = subprocess.Popen([sys.executable, str(ROOT / "tests" / "stub_upstream.py"), "--port",
                                str(port), "--name", "fr-paris"], cwd=ROOT)
    wait_http(f"http://127.0.0.1:{port}/health", 30)
    return process


def run_gateway(upstream: str, model: str, port: int, home: str, keys_path: str) -> None:
    """Child process: the gateway in front of one fr-paris replica at ``upstream``."""
    import uvicorn

    from policies import Policy
    from scheduler.ledger import Ledger
    from serving.gateway import Authenticator, Gateway, KeyStore, create_app
    from serving.routing import Endpoint, Router, StaticEndpoints

    policy = Policy.load()
    endpoints = StaticEndpoints([Endpoint("bench", model, "fr-paris", "FR", "node-bench", upstream)])
    gateway = Gateway(policy=policy, ledger=Ledger.open(home), auth=Authenticator(KeyStore(Path(keys_path))),
                      router=Router(policy, endpoints))
    import gc

    gc.freeze()
    uvicorn.run(create_app(gateway), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, loop="uvloop", http="httptools")


async def load(url: str, body: bytes, headers: dict[str, str], concurrency: int, requests: int,
               stream: bool) -> dict[str, float]:
    """Send ``requests`` requests with ``concurrency`` in flight; latency and TTFT per request."""
    latencies: list[float] = []
    ttfts: list[float] = []
    remaining = requests
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        raise RuntimeError(f"{url}: HTTP {response.status}: {await response.text()}")
                    if stream:
                        first = True
                        async for _ in response.content.iter_any():
                            if first:
                                ttfts.append(time.perf_counter() - start)
                                first = False
                    else:
                        await response.read()
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    result = {"p50": statistics.median(latencies), "p99": latencies[int(0.99 * (len(latencies) - 1))],
              "rps": len(latencies) / elapsed}
    if ttfts:
        result["ttft"] = statistics.median(ttfts)
    return result


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process and all its threads so far (Linux ``/proc``)."""
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def interleaved(direct: str, gateway: str, body: bytes, auth: dict[str, str], concurrency: int,
                n: int, stream: bool, rounds: int = 4, pids: tuple[int | None, int | None] = (None, None)
                ) -> tuple[dict[str, float], dict[str, float]]:
    """Direct and gateway in alternating rounds, so drift on a noisy machine hits both alike;
    per-round medians and rates are combined by their medians. ``pids`` (gateway, upstream):
    the gateway rounds also report CPU milliseconds per request of each."""
    results: dict[str, list[dict[str, float]]] = {"direct": [], "gateway": []}
    per_round = max(n // rounds, concurrency * 2)
    for _ in range(rounds):
        results["direct"].append(asyncio.run(load(direct, body, auth, concurrency, per_round, stream)))
        before = [cpu_seconds(pid) for pid in pids]
        results["gateway"].append(asyncio.run(load(gateway, body, auth, concurrency, per_round, stream)))
        after = [cpu_seconds(pid) for pid in pids]
        results["gateway"][-1]["gw_cpu"] = (after[0] - before[0]) / per_round
        results["gateway"][-1]["up_cpu"] = (after[1] - before[1]) / per_round
    combined = []
    for kind in ("direct", "gateway"):
        rows = results[kind]
        combined.append({key: statistics.median(row[key] for row in rows) for key in rows[0]})
    return combined[0], combined[1]


def measure(direct: str, gateway: str, key: str, model: str, requests: int, chat_tokens: int,
            pids: tuple[int | None, int | None] = (None, None)) -> None:
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
            "X-Corridor-Marking": "DR"}
    print(f"{'conc':>4} {'stream':>6} {'direct p50':>10} {'p99':>8} {'rps':>7} │ "
          f"{'gw p50':>8} {'p99':>8} {'rps':>7} │ {'+p50 ms':>8} {'+p99 ms':>8} {'thr ratio':>9} {'+ttft ms':>8}"
          f" │ {'gw cpu ms/req':>13} {'upstream':>8}")
    for concurrency in (1, 16, 64):
        for stream in (False, True):
            body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Bonjour"}],
                               "max_tokens": chat_tokens, "stream": stream}).encode()
            n = max(requests if concurrency > 1 else requests // 2, concurrency * 4)
            asyncio.run(load(direct, body, auth, concurrency, min(n, 50), stream))  # warm-up
            asyncio.run(load(gateway, body, auth, concurrency, min(n, 50), stream))
            d, g = interleaved(direct, gateway, body, auth, concurrency, n, stream, pids=pids)
            ttft = f"{(g['ttft'] - d['ttft']) * 1e3:>8.2f}" if stream else f"{'':>8}"
            print(f"{concurrency:>4} {str(stream):>6} {d['p50'] * 1e3:>9.2f}m {d['p99'] * 1e3:>7.2f}m "
                  f"{d['rps']:>7.0f} │ {g['p50'] * 1e3:>7.2f}m {g['p99'] * 1e3:>7.2f}m {g['rps']:>7.0f} │ "
                  f"{(g['p50'] - d['p50']) * 1e3:>8.2f} {(g['p99'] - d['p99']) * 1e3:>8.2f} "
                  f"{g['rps'] / d['rps']:>9.2f} {ttft} │ {g['gw_cpu'] * 1e3:>13.3f} "
                  f"{g['up_cpu'] * 1e3:>8.3f}", flush=True)


def bench(upstream_kind: str, requests: int) -> None:
    from serving.gateway import KeyStore

    home = tempfile.mkdtemp(prefix="corridor-bench-")
    keys_path = Path(home) / "api-keys.json"
    key = KeyStore(keys_path).issue("app", tenant="fr-interior")
    upstream_port, gateway_port = free_port(), free_port()
    children: list = []
    try:
        if upstream_kind == "stub":
            model, tokens = "corridor-tiny", 16
            children.append(start_stub(upstream_port))
        else:
            from serving.models.demo import build_demo_model
            from serving.replica.actor import OFFLINE_ENV

            model, tokens = "corridor-tiny", 16
            path = build_demo_model(Path(home) / "models" / model)
            env = {**os.environ, **OFFLINE_ENV, "VLLM_CPU_KVCACHE_SPACE": "1"}
            log = open(Path(home) / "vllm.log", "wb")
            children.append(subprocess.Popen(
                [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(path),
                 "--served-model-name", model, "--host", "127.0.0.1", "--port", str(upstream_port),
                 "--max-model-len", "512", "--disable-log-stats"], env=env, stdout=log, stderr=log))
            print("starting vLLM (about a minute) …", flush=True)
            wait_http(f"http://127.0.0.1:{upstream_port}/health", 600)
        upstream = f"http://127.0.0.1:{upstream_port}"
        context = multiprocessing.get_context("spawn")
        gateway = context.Process(target=run_gateway, args=(upstream, model, gateway_port, home, str(keys_path)))
        gateway.start()
        children.append(gateway)
        wait_http(f"http://127.0.0.1:{gateway_port}/healthz", 60)
        print(f"\nupstream: {upstream_kind} ({requests} requests per cell; latencies in ms)")
        measure(f"{upstream}/v1/chat/completions", f"http://127.0.0.1:{gateway_port}/v1/chat/completions",
                key, model, requests, tokens, pids=(gateway.pid, children[0].pid))
    finally:
        for child in children:
            child.terminate()
            child.join(10) if hasattr(child, "join") else child.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", choices=["stub", "vllm", "both"], default="both")
    parser.add_argument("--requests", type=int, default=2000, help="requests per cell (stub)")
    parser.add_argument("--vllm-requests", type=int, default=128, help="requests per cell (vLLM)")
    args = parser.parse_args()
    if args.upstream in ("stub", "both"):
        bench("stub", args.requests)
    if args.upstream in ("vllm", "both"):
        bench("vllm", args.vllm_requests)
    print("\ngoals: +p50 <= 1 ms, +p99 <= 5 ms, throughput ratio >= 0.95, >= 1,000 rps via the gateway (stub), "
          "gateway CPU <= 0.2 ms per request at concurrency 64 (stub)")


if __name__ == "__main__":
    main()
