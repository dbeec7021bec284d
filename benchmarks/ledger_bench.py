"""Ledger benchmark: durable appends, proof time and full verification at scale.

    python benchmarks/ledger_bench.py [--entries 1000000] [--appends 19200] [--rounds 3] [--dir DIR]

Measures, in one run and on one disk:

1. durable appends per second with 1 and with 64 writer threads, beside a
   baseline of plain SQLite inserts of the same leaf bytes with the same
   durability (WAL, ``synchronous=FULL``): one insert + commit per row, and
   for 64 threads the same under a lock (what naive durability costs); and,
   for information, 64 tasks awaiting ``append_async`` on one event loop, as
   the gateway appends (compared with the 64-thread baseline). Each figure is
   the median of ``--rounds`` rounds, a round running every measurement once,
   baseline and ledger back to back; the ratio is the median of the ratios
   within a round, so a machine busy with other work skews it less than the
   rates;
2. inclusion and consistency proof time in a log of ``--entries`` entries,
   built with the ledger's own batch writer (``append_many``, 10,000 entries
   per transaction: the same leaves, subtree hashes and rows as ``append``);
3. full verification time of that log (every leaf hash, index, subtree hash
   and tree head).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.canonical import canonical_json  # noqa: E402
from scheduler.ledger import Ledger, LedgerEntryDraft, LedgerReader, Workload  # noqa: E402
from scheduler.ledger.entry import utc_now  # noqa: E402

GOAL_APPENDS = 20_000
GOAL_PROOF_MS = 1.0
GOAL_VERIFY_S = 20.0
BUILD_BATCH = 10_000


def sample_draft(seq: int) -> LedgerEntryDraft:
    """A placement decision as the scheduler writes it (about 500 bytes of canonical JSON)."""
    return LedgerEntryDraft(
        kind="placement",
        decision_id=f"dec-{seq:012d}",
        tenant=("fr-interior", "de-bund", "fr-sante")[seq % 3],
        workload=Workload(kind="replica", model="corridor-tiny", marking="DR", data_flags=["personal"],
                          resources={"gpus": 1}),
        pool=("fr-paris", "de-frankfurt")[seq % 2],
        jurisdiction=("FR", "DE")[seq % 2],
        node_id=f"{seq:056x}",
        allowed=seq % 7 != 0,
        reasons=[] if seq % 7 else ["RESIDENCY"],
        policy_digest="9f" * 32,
        detail={"seq": seq},
    )


def leaf_bytes(draft: LedgerEntryDraft, index: int) -> bytes:
    return canonical_json({**draft.fields(), "index": index, "timestamp": utc_now()})


def run_threads(threads: int, per_thread: int, work) -> float:
    """Run ``work(worker, count)`` on ``threads`` threads at once; return appends per second."""
    start = threading.Barrier(threads + 1)

    def body(worker: int) -> None:
        start.wait()
        work(worker, per_thread)

    pool = [threading.Thread(target=body, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    return threads * per_thread / (time.perf_counter() - began)


def plain_sqlite(directory: Path, threads: int, per_thread: int, leaf: bytes) -> float:
    """Baseline: insert + commit of each row into a plain table, WAL, synchronous=FULL."""
    connection = sqlite3.connect(directory / "plain.db", isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")
    connection.execute("CREATE TABLE IF NOT EXISTS leaves (idx INTEGER PRIMARY KEY, leaf BLOB NOT NULL)")
    lock = threading.Lock()

    def work(worker: int, count: int) -> None:
        for _ in range(count):
            with lock:
                connection.execute("INSERT INTO leaves (leaf) VALUES (?)", (leaf,))

    rate = run_threads(threads, per_thread, work)
    connection.close()
    return rate


def ledger_appends(directory: Path, threads: int, per_thread: int) -> tuple[float, int]:
    """Appends per second through Ledger.append, and the number of transactions it took."""
    drafts = [sample_draft(i) for i in range(256)]
    with Ledger.open(directory) as ledger:
        before = ledger.commits

        def work(worker: int, count: int) -> None:
            for i in range(count):
                ledger.append(drafts[(worker + i) % len(drafts)])

        rate = run_threads(threads, per_thread, work)
        commits = ledger.commits - before
    return rate, commits


def ledger_appends_async(directory: Path, tasks: int, per_task: int) -> tuple[float, int]:
    """Appends per second through Ledger.append_async from ``tasks`` tasks on one event loop."""
    drafts = [sample_draft(i) for i in range(256)]
    with Ledger.open(directory) as ledger:

        async def run() -> float:
            async def task(worker: int) -> None:
                for i in range(per_task):
                    await ledger.append_async(drafts[(worker + i) % len(drafts)])

            began = time.perf_counter()
            await asyncio.gather(*(task(w) for w in range(tasks)))
            return tasks * per_task / (time.perf_counter() - began)

        rate = asyncio.run(run())
        commits = ledger.commits
    return rate, commits


class AppendRow:
    """One line of the append table: the ledger's and the baseline's rate in each round."""

    def __init__(self, label: str, appends: int) -> None:
        self.label = label
        self.appends = appends
        self.rates: list[float] = []
        self.bases: list[float] = []
        self.commits: list[int] = []

    def add(self, rate: float, base: float, commits: int) -> None:
        self.rates.append(rate)
        self.bases.append(base)
        self.commits.append(commits)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)

    def line(self) -> str:
        ratio = statistics.median(rate / base for rate, base in zip(self.rates, self.bases))
        commits = statistics.median(self.commits)
        return (f"  {self.label:<26}{self.rate:>10,.0f}{statistics.median(self.bases):>14,.0f}{ratio:>7.2f}x"
                f"{self.appends:>10,}{commits:>9,.0f}   [{', '.join(f'{rate:,.0f}' for rate in self.rates)}]")


def measure_appends(root: Path, appends: int, rounds: int, leaf: bytes) -> list[AppendRow]:
    """The append table: 1 writer thread, 64 writer threads, 64 asyncio tasks, each beside its baseline."""
    single = max(200, appends // 10)
    per_thread = {1: single, 64: max(1, appends // 64)}
    rows = [AppendRow("1 writer thread", single), AppendRow("64 writer threads", 64 * per_thread[64]),
            AppendRow("64 asyncio tasks", 64 * per_thread[64])]
    for round_ in range(rounds):
        print(f"  ... round {round_ + 1} of {rounds}", flush=True)
        bases = {}
        for threads in (1, 64):
            (root / f"plain-{threads}-{round_}").mkdir()
            bases[threads] = plain_sqlite(root / f"plain-{threads}-{round_}", threads, per_thread[threads], leaf)
            rate, commits = ledger_appends(root / f"ledger-{threads}-{round_}", threads, per_thread[threads])
            rows[0 if threads == 1 else 1].add(rate, bases[threads], commits)
        rate, commits = ledger_appends_async(root / f"ledger-async-{round_}", 64, per_thread[64])
        rows[2].add(rate, bases[64], commits)
    return rows


def build_log(directory: Path, entries: int) -> float:
    """Fill a log with ``entries`` entries through append_many; return seconds taken."""
    drafts = [sample_draft(i) for i in range(BUILD_BATCH)]
    began = time.perf_counter()
    with Ledger.open(directory) as ledger:
        done = 0
        while done < entries:
            count = min(BUILD_BATCH, entries - done)
            ledger.append_many(drafts[:count])
            done += count
            if done % 100_000 == 0 or done == entries:
                print(f"  ... {done:,} entries ({time.perf_counter() - began:.1f} s)", flush=True)
            if done == entries // 2:
                ledger.latest_tree_head()
    return time.perf_counter() - began


def time_proofs(directory: Path, samples: int) -> dict[str, float]:
    with LedgerReader.open(directory) as reader:
        size = reader.size
        rng = random.Random(6962)
        reader.inclusion_proof(0, size)  # warm the connection
        inclusion = []
        for _ in range(samples):
            index = rng.randrange(size)
            began = time.perf_counter()
            reader.inclusion_proof(index, size)
            inclusion.append(time.perf_counter() - began)
        consistency = []
        for _ in range(samples // 4):
            first = rng.randrange(1, size + 1)
            began = time.perf_counter()
            reader.consistency_proof(first, size)
            consistency.append(time.perf_counter() - began)
    inclusion.sort()
    return {
        "inclusion_mean_ms": statistics.fmean(inclusion) * 1e3,
        "inclusion_p99_ms": inclusion[int(len(inclusion) * 0.99) - 1] * 1e3,
        "consistency_mean_ms": statistics.fmean(consistency) * 1e3,
    }


def time_verify(directory: Path) -> tuple[float, int]:
    with LedgerReader.open(directory) as reader:
        began = time.perf_counter()
        report = reader.verify()
        return time.perf_counter() - began, report.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="size of the log for proofs and verify")
    parser.add_argument("--appends", type=int, default=19_200, help="appends per run with 64 writers")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the append measurements (medians)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the databases (default: a temp dir)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="ledger-bench-", dir=args.dir))
    try:
        print(f"Corridor ledger benchmark: SQLite {sqlite3.sqlite_version}, WAL, synchronous=FULL, "
              f"{os.cpu_count()} CPUs, databases in {root}")
        leaf = leaf_bytes(sample_draft(1), 123_456)
        rows = measure_appends(root, args.appends, max(1, args.rounds), leaf)
        print(f"\n{'durable appends/s, median':<28}{'ledger':>10}{'plain SQLite':>14}{'ratio':>8}{'appends':>10}"
              f"{'commits':>9}   [ledger, each round]")
        for row in rows:
            print(row.line())

        print(f"\nlog of {args.entries:,} entries", flush=True)
        built = build_log(root / "big", args.entries)
        rate = args.entries / built
        print(f"  {'build (append_many, 10,000 per commit)':<44}{built:>8.1f} s   ({rate:,.0f} entries/s)")
        proofs = time_proofs(root / "big", 2000)
        print(f"  {'inclusion proof, mean / p99 of 2,000':<44}{proofs['inclusion_mean_ms']:>8.3f} / "
              f"{proofs['inclusion_p99_ms']:.3f} ms")
        print(f"  {'consistency proof, mean of 500':<44}{proofs['consistency_mean_ms']:>8.3f} ms")
        verify_s, verified = time_verify(root / "big")
        print(f"  {'full verification':<44}{verify_s:>8.1f} s   ({verified / verify_s:,.0f} entries/s)")

        many = rows[1].rate
        checks = [
            (f">= {GOAL_APPENDS:,} durable appends/s with 64 writers", f"{many:,.0f}/s", many >= GOAL_APPENDS),
            (f"inclusion proof < {GOAL_PROOF_MS:g} ms at {args.entries:,}", f"{proofs['inclusion_mean_ms']:.3f} ms",
             proofs["inclusion_mean_ms"] < GOAL_PROOF_MS),
            (f"verify {args.entries:,} entries < {GOAL_VERIFY_S:g} s", f"{verify_s:.1f} s", verify_s < GOAL_VERIFY_S),
        ]
        print("\ngoals")
        for goal, figure, met in checks:
            print(f"  {goal:<46}{figure:>14}   {'met' if met else 'MISSED'}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
