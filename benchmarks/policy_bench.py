"""Rulebook throughput: decisions per second against 100, 1,000 and 10,000 pools.

Beside each figure it measures a *floor* in the same run: a loop that only
reads the pool attributes a decision reads (pool id, jurisdiction, the expiry
of each required accreditation) and builds nothing. The ratio decision/floor
is what to watch on noisy machines. Pinned to one core.

Goals: >= 200,000 decisions/s, within 10x of the floor, and explaining one
workload against 10,000 pools (decide_all + JSON with messages) under 50 ms.

Run: python benchmarks/policy_bench.py [--repeat N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import statistics
import time

from policies import Policy, Workload, load_bundle
from policies.bundle import Bundle, default_bundle_path

ACCREDITATIONS = ["secnumcloud-3.2", "hds", "dr-homologation", "bsi-c5", "vsa-approval"]
WORKLOADS = [
    ("fr-interior", "DR", ""),
    ("de-federal-it", "VS-NfD", ""),
    ("fr-health", "PUBLIC", ""),
    ("eu-agency", "RESTREINT UE", "sensitive"),
]


def generated_policy(n_pools: int, seed: int = 7) -> Policy:
    """The default bundle's tenants, models and rules over ``n_pools`` generated pools."""
    rng = random.Random(seed)
    document = load_bundle(default_bundle_path()).model_dump(mode="json")
    document["pools"] = [{
        "id": f"pool-{i}", "jurisdiction": rng.choice(["FR", "DE"]), "operator": "op",
        "site": f"site-{i % 17}", "gpu": {"type": "H100", "count": 8},
        "accreditations": [{"id": a, "valid_until": (dt.date(2030, 1, 1) if rng.random() < 0.9
                                                     else dt.date(2020, 1, 1)).isoformat()}
                           for a in ACCREDITATIONS if rng.random() < 0.6],
    } for i in range(n_pools)]
    return Policy(Bundle.model_validate(document))


def floor_loop(policy: Policy, required: tuple[str, ...], at_ts: float) -> int:
    """Read what a decision reads, per pool; build nothing."""
    n = 0
    for pool_id in policy.pools:
        compiled = policy.pools[pool_id]
        jurisdiction = compiled.pool.jurisdiction
        for accreditation in required:
            until = compiled.expiry.get(accreditation)
            if until is not None and until > at_ts and jurisdiction:
                n += 1
    return n


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    at = dt.datetime(2026, 11, 28, 12, tzinfo=dt.timezone.utc)
    workloads = [Workload.create(t, m, data_flags=f, model="corridor-tiny", kind="replica")
                 for t, m, f in WORKLOADS]
    required = ("secnumcloud-3.2", "dr-homologation")
    print(f"{'pools':>7} {'decisions/s':>13} {'µs/decision':>12} {'floor µs/pool':>14} "
          f"{'ratio':>6} {'single decide µs':>17} {'explain ms':>11}")
    for n in (100, 1_000, 10_000):
        policy = generated_policy(n)
        # decide_all over every pool, for each workload
        best, _ = best_of(args.repeat, lambda: [policy.decide_all(w, at=at) for w in workloads])
        per_decision = best / (n * len(workloads))
        floor_best, _ = best_of(args.repeat, lambda: [floor_loop(policy, required, at.timestamp())
                                                       for _ in workloads])
        floor_per_pool = floor_best / (n * len(workloads))
        # one decide() call, plan included (what a single routing decision costs)
        pool_ids = list(policy.pools)[:200]
        single, _ = best_of(args.repeat, lambda: [policy.decide(workloads[0], p, at=at) for p in pool_ids])
        explain, _ = best_of(args.repeat, lambda: policy.decide_all(workloads[0], at=at).to_json())
        print(f"{n:>7} {1 / per_decision:>13,.0f} {per_decision * 1e6:>12.2f} "
              f"{floor_per_pool * 1e6:>14.3f} {per_decision / floor_per_pool:>5.1f}x "
              f"{single / len(pool_ids) * 1e6:>17.1f} {explain * 1e3:>11.2f}")
    print("goals: >= 200,000 decisions/s; ratio <= 10x the floor; explain 10,000 pools < 50 ms")


if __name__ == "__main__":
    main()
