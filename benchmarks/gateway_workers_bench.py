"""Gateway throughput with one and two worker processes on the site's PostgreSQL database.

The same site served by 1 and then 2 ``corridor gateway`` processes sharing one listening socket
(:mod:`serving.installation.worker`), in front of the instant stub upstream, each process
writing a durable ledger entry per request into PostgreSQL (``fsync`` on): non-streaming chat
completions at concurrency 64, the two configurations in alternating rounds so drift on a noisy
machine hits both alike. Printed per configuration: requests/s, p50/p99 latency, and CPU per
request (user + system time of the gateway processes over the requests they served; the
database's and the load generator's CPU not counted). Then the ratio of 2 to 1 process. For
reference, in the same rounds: today's one-process gateway on SQLite (``gateway_bench``'s,
without rate limits), the embedded default.

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
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from gateway_bench import load, run_gateway, start_stub  # noqa: E402
from serving.loopback import free_port, wait_http  # noqa: E402
from tests.postgres.gateway_workers import MODEL, WorkerSite  # noqa: E402
from tests.postgres_server import PostgresServer  # noqa: E402

CONCURRENCY = 64


@dataclass
class Target:
    """One configuration under load: its URL, its app key, and its processes (for their CPU time)."""

    url: str
    key: str
    pids: list[int]

    def cpu_seconds(self) -> float:
        return sum(process_cpu_seconds(pid) for pid in self.pids)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(targets: dict[str, Target], requests: int, rounds: int) -> dict[str, dict[str, float]]:
    """Alternating rounds of ``requests`` each; per configuration the medians of the rounds'
    rates and latencies, and CPU seconds per request over all its rounds."""
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Bonjour"}],
                       "max_tokens": 16}).encode()
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in targets}
    cpu: dict[str, float] = dict.fromkeys(targets, 0.0)
    for target in targets.values():  # warm-up: connections, caches, the database's buffers
        asyncio.run(load(target.url + "/v1/chat/completions", body, _headers(target), CONCURRENCY, 500, False))
    for _ in range(rounds):
        for name, target in targets.items():
            before = target.cpu_seconds()
            rows[name].append(asyncio.run(load(target.url + "/v1/chat/completions", body, _headers(target),
                                               CONCURRENCY, requests, False)))
            cpu[name] += target.cpu_seconds() - before
    return {name: {**{key: statistics.median(row[key] for row in rows[name]) for key in rows[name][0]},
                   "cpu_per_request": cpu[name] / (requests * rounds)} for name in targets}


def _headers(target: Target) -> dict[str, str]:
    return {"Authorization": f"Bearer {target.key}", "Content-Type": "application/json",
            "X-Corridor-Marking": "DR"}


def sqlite_gateway(home: Path, upstream: str) -> tuple[Target, multiprocessing.Process]:
    """Today's one-process gateway on SQLite (``gateway_bench.run_gateway``), for reference."""
    from serving.gateway import KeyStore

    home.mkdir(parents=True)
    keys = home / "api-keys.json"
    key = KeyStore(keys).issue("app", tenant="fr-interior")
    port = free_port()
    process = multiprocessing.get_context("spawn").Process(
        target=run_gateway, args=(upstream, MODEL, port, str(home), str(keys)))
    process.start()
    wait_http(f"http://127.0.0.1:{port}/healthz", 60)
    return Target(f"http://127.0.0.1:{port}", key, [process.pid]), process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per round and configuration")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="corridor-workers-bench-"))
    stub_port = free_port()
    upstream = f"http://127.0.0.1:{stub_port}"
    stub = start_stub(stub_port)
    sites: list[WorkerSite] = []
    reference = None
    try:
        with PostgresServer(fsync=True) as server:
            try:
                targets: dict[str, Target] = {}
                for n in (1, 2):
                    site = WorkerSite(home / f"site-{n}", server.create_database(f"bench_{n}"), upstream,
                                      workers=n).start()
                    sites.append(site)
                    targets[f"{n} on PostgreSQL"] = Target(site.url, site.keys["app"],
                                                           [p.pid for p in site.processes])
                targets["1 on SQLite (ref.)"], reference = sqlite_gateway(home / "sqlite", upstream)
                started = time.perf_counter()
                results = measure(targets, args.requests, args.rounds)
            finally:
                for site in sites:
                    site.stop()
                if reference is not None:
                    reference.terminate()
                    reference.join(10)
    finally:
        stub.terminate()
        stub.wait(10)
    print(f"\ngateway processes, stub upstream, concurrency {CONCURRENCY}, {args.rounds} rounds x "
          f"{args.requests} requests ({time.perf_counter() - started:.0f} s); PostgreSQL with fsync on")
    print(f"{'processes':>20} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/req':>11}")
    for name, row in results.items():
        print(f"{name:>20} {row['rps']:>8.0f} {row['p50'] * 1e3:>8.2f} {row['p99'] * 1e3:>8.2f} "
              f"{row['cpu_per_request'] * 1e3:>11.3f}")
    one, two = results["1 on PostgreSQL"], results["2 on PostgreSQL"]
    print(f"2 vs 1 process: throughput x{two['rps'] / one['rps']:.2f} (goal >= 1.30), "
          f"CPU per request x{two['cpu_per_request'] / one['cpu_per_request']:.2f} (goal 0.90-1.10)")


if __name__ == "__main__":
    main()
