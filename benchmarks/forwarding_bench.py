"""What forwarding across the border costs: a request served by the peer site vs served at home.

Two sites in one process (as ``tests/unit/serving/federation/two_sites.py`` builds them: each its
own ledger, gateway and mutual-TLS peer API) in front of instant stub upstreams. Under an active
DE->FR declaration, de-federal-it's VS-NfD embeddings at the DE gateway are forwarded to FR (DE
has no embedding replica); its VS-NfD chat is served at home in DE. Both go through the DE
gateway and a stub that answers at once, so the difference is the forwarding: the peer link
(mutual TLS, connections reused), FR's re-decision, FR's ledger write and the second proxy hop.
Requests alternate home/forwarded, one at a time; figures are per request.

    python benchmarks/forwarding_bench.py [--requests 1000]

Goal (issue 13): forwarding adds ≤ 2 ms p50 and ≤ 5 ms p99 on loopback.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "unit" / "serving" / "federation")]

import httpx  # noqa: E402

from two_sites import two_sites  # noqa: E402

SCOPE = {"tenants": ["de-federal-it"], "markings": ["VS-NfD"], "models": ["minilm"], "directions": ["DE->FR"]}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests of each kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home, two_sites(Path(home), witness_period_s=5.0) as corridor:
        fr, de = corridor["FR"], corridor["DE"]
        declared = de.post("/admin/crisis", "DE/operator", {"scope": SCOPE, "reason": "bench", "valid_for_hours": 1})
        declaration = declared.json()["id"]
        corridor.wait(lambda: fr.get(f"/admin/crisis/{declaration}", "FR/operator").status_code == 200)
        fr.post(f"/admin/crisis/{declaration}/approve", "FR/operator", {})
        corridor.wait(lambda: de.get(f"/admin/crisis/{declaration}", "DE/operator").json()["status"] == "active")
        headers = de.headers("de-federal-it/app", **{"X-Corridor-Marking": "VS-NfD"})
        home_body = {"model": "corridor-tiny", "messages": [{"role": "user", "content": "Hallo"}]}
        away_body = {"model": "minilm", "input": "Lagebericht"}
        times: dict[str, list[float]] = {"home": [], "forwarded": []}
        with httpx.Client(base_url=de.url, headers=headers, timeout=30) as client:
            for warm in range(50):
                client.post("/v1/chat/completions", json=home_body)
                client.post("/v1/embeddings", json=away_body)
            for _ in range(args.requests):
                for kind, path, body in (("home", "/v1/chat/completions", home_body),
                                         ("forwarded", "/v1/embeddings", away_body)):
                    started = time.perf_counter()
                    answer = client.post(path, json=body)
                    times[kind].append((time.perf_counter() - started) * 1000)
                    expected = "DE" if kind == "home" else "FR"
                    assert answer.status_code == 200 and answer.headers["x-corridor-site"] == expected, answer.text
    print(f"{args.requests} requests of each kind, alternating, one at a time (ms)")
    print(f"{'':<12}{'p50':>8}{'p90':>8}{'p99':>8}{'mean':>8}")
    for kind, values in times.items():
        print(f"{kind:<12}{percentile(values, 50):>8.2f}{percentile(values, 90):>8.2f}"
              f"{percentile(values, 99):>8.2f}{statistics.fmean(values):>8.2f}")
    p50 = percentile(times["forwarded"], 50) - percentile(times["home"], 50)
    p99 = percentile(times["forwarded"], 99) - percentile(times["home"], 99)
    print(f"forwarding adds: p50 {p50:+.2f} ms (goal ≤ 2), p99 {p99:+.2f} ms (goal ≤ 5); "
          f"ratio of p50s {percentile(times['forwarded'], 50) / percentile(times['home'], 50):.2f}")


if __name__ == "__main__":
    main()
