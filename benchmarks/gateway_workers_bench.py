"""Gateway throughput with one and two worker processes on the site's PostgreSQL database.

The same site served by 1 and then 2 ``corridor gateway`` processes sharing one listening socket
(:mod:`serving.installation.worker`), in front of the instant stub upstream, each process
writing a durable ledger entry per request into PostgreSQL (``fsync`` on): non-streaming chat
completions at concurrency 64, the two configurations in alternating rounds so drift on a noisy
machine hits both alike. Printed per configuration: requests/s, p50/p99 latency, and CPU per
request (user + system time of the gateway processes over the requests they served; the
database's and the load generator's CPU not counted). Then the ratio of 2 to 1 process.

Load generator, stub, PostgreSQL and the gateway processes share this machine's cores: read
the ratios, not the absolutes.

Goals: 2 processes >= 1.3 x the requests/s of 1; CPU per request within 10 %.

Run: python benchmarks/gateway_workers_bench.py [--requests N] [--rounds R]
(needs PostgreSQL's server binaries: ``make postgres-deps``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from gateway_bench import load, start_stub  # noqa: E402
from serving.loopback import free_port  # noqa: E402
from tests.postgres.gateway_workers import MODEL, WorkerSite  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402

CONCURRENCY = 64


def measure(sites: dict[int, WorkerSite], requests: int, rounds: int) -> dict[int, dict[str, float]]:
    """Alternating rounds of ``requests`` each; per configuration the medians of the rounds'
    rates and latencies, and CPU seconds per request over all its rounds."""
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Bonjour"}],
                       "max_tokens": 16}).encode()
    rows: dict[int, list[dict[str, float]]] = {n: [] for n in sites}
    cpu: dict[int, float] = dict.fromkeys(sites, 0.0)
    served: dict[int, int] = dict.fromkeys(sites, 0)
    for n, site in sites.items():  # warm-up: connections, caches, the database's buffers
        asyncio.run(load(site.url + "/v1/chat/completions", body, _headers(site), CONCURRENCY, 500, False))
    for _ in range(rounds):
        for n, site in sites.items():
            before = site.cpu_seconds()
            rows[n].append(asyncio.run(load(site.url + "/v1/chat/completions", body, _headers(site),
                                            CONCURRENCY, requests, False)))
            cpu[n] += site.cpu_seconds() - before
            served[n] += requests
    return {n: {**{key: statistics.median(row[key] for row in rows[n]) for key in rows[n][0]},
                "cpu_per_request": cpu[n] / served[n]} for n in sites}


def _headers(site: WorkerSite) -> dict[str, str]:
    return {"Authorization": f"Bearer {site.keys['app']}", "Content-Type": "application/json",
            "X-Corridor-Marking": "DR"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per round and configuration")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="corridor-workers-bench-"))
    stub_port = free_port()
    stub = start_stub(stub_port)
    sites: dict[int, WorkerSite] = {}
    try:
        with PostgresServer(fsync=True) as server:
            try:
                for n in (1, 2):
                    sites[n] = WorkerSite(home / f"site-{n}", server.create_database(f"bench_{n}"),
                                          f"http://127.0.0.1:{stub_port}", workers=n).start()
                started = time.perf_counter()
                results = measure(sites, args.requests, args.rounds)
            finally:
                for site in sites.values():
                    site.stop()
    finally:
        stub.terminate()
        stub.wait(10)
    print(f"\ngateway worker processes on PostgreSQL (fsync on), stub upstream, concurrency {CONCURRENCY}, "
          f"{args.rounds} rounds x {args.requests} requests ({time.perf_counter() - started:.0f} s)")
    print(f"{'processes':>9} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11}")
    for n, row in results.items():
        print(f"{n:>9} {row['rps']:>8.0f} {row['p50'] * 1e3:>8.2f} {row['p99'] * 1e3:>8.2f} "
              f"{row['cpu_per_request'] * 1e3:>11.3f}")
    throughput = results[2]["rps"] / results[1]["rps"]
    cpu = results[2]["cpu_per_request"] / results[1]["cpu_per_request"]
    print(f"2 vs 1 process: throughput x{throughput:.2f} (goal >= 1.30), "
          f"CPU per request x{cpu:.2f} (goal 0.90-1.10)")


if __name__ == "__main__":
    main()
