"""Ledger on PostgreSQL: durable appends/s from two processes into one log, beside SQLite.

    python benchmarks/ledger_pg_bench.py [--appends 19200] [--rounds 3]

Measures, in one run and on one disk, with the same 64 concurrent writers each time:

1. the baseline: one process appending to SQLite (``ledger.db``, WAL, ``synchronous=FULL``)
   from 64 threads, as ``ledger_bench.py`` does;
2. one process appending to PostgreSQL from 64 threads;
3. two processes appending to the same PostgreSQL ledger, 32 threads each, and 32
   asyncio tasks each (``append_async``, as the gateway appends).

The PostgreSQL server is a throwaway one started for the run (``tests/postgres_server.py``)
with ``fsync=on``: a commit is on disk before the append returns, as with SQLite. The
processes of a measurement start together; the rate is all their appends over the time from
the first start to the last end. Each figure is the median of ``--rounds`` rounds, a round
running every measurement once; the ratio to SQLite is the median of the ratios within a round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger_bench import ledger_appends, run_threads, sample_draft

from scheduler.ledger import open_ledger

WRITERS = 64


def worker(home: str, database: str, mode: str, writers: int, per_writer: int) -> None:
    """One appending process: open, say ready, wait for "go", append, print start, end and commits as JSON."""
    drafts = [sample_draft(i) for i in range(256)]
    with open_ledger(Path(home), database=database) as ledger:
        print("ready", flush=True)
        sys.stdin.readline()
        began = time.time()
        if mode == "threads":
            def work(writer: int, count: int) -> None:
                for i in range(count):
                    ledger.append(drafts[(writer + i) % len(drafts)])

            run_threads(writers, per_writer, work)
        else:
            async def run() -> None:
                async def task(writer: int) -> None:
                    for i in range(per_writer):
                        await ledger.append_async(drafts[(writer + i) % len(drafts)])

                await asyncio.gather(*(task(w) for w in range(writers)))

            asyncio.run(run())
        ended = time.time()
        print(json.dumps({"began": began, "ended": ended, "commits": ledger.commits}), flush=True)


def processes(home: Path, database: str, count: int, mode: str, appends: int) -> tuple[float, int]:
    """Appends/s of ``count`` processes sharing ``WRITERS`` writers into ``database``, and their commits."""
    writers = WRITERS // count
    per_writer = appends // WRITERS
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    children = [
        subprocess.Popen([sys.executable, __file__, "--worker", str(home), database, mode, str(writers),
                          str(per_writer)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(count)
    ]
    for child in children:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("a benchmark worker did not start")
    for child in children:
        child.stdin.write("go\n")
        child.stdin.flush()
    results = [json.loads(child.stdout.readline()) for child in children]
    for child in children:
        if child.wait() != 0:
            raise RuntimeError("a benchmark worker failed")
    elapsed = max(r["ended"] for r in results) - min(r["began"] for r in results)
    return count * writers * per_writer / elapsed, sum(r["commits"] for r in results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=19_200, help="appends per measurement (all writers)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians)")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        home, database, mode, writers, per_writer = args.worker
        worker(home, database, mode, int(writers), int(per_writer))
        return

    from tests.postgres_server import PostgresServer, PostgresUnavailable

    root = Path(tempfile.mkdtemp(prefix="ledger-pg-bench-"))
    try:
        server = PostgresServer(fsync=True)
        server.__enter__()
    except PostgresUnavailable as exc:
        print(f"skipped: {exc}")
        shutil.rmtree(root, ignore_errors=True)
        return
    rows = {
        "SQLite, 1 process x 64 threads": [],
        "PostgreSQL, 1 process x 64 threads": [],
        "PostgreSQL, 2 processes x 32 threads": [],
        "PostgreSQL, 2 processes x 32 tasks": [],
    }
    try:
        print(f"Corridor ledger on PostgreSQL: {args.appends:,} durable appends per measurement from {WRITERS} "
              f"writers, fsync on, {os.cpu_count()} CPUs")
        for round_ in range(max(1, args.rounds)):
            print(f"  ... round {round_ + 1} of {args.rounds}", flush=True)
            (root / f"sqlite-{round_}").mkdir()
            rate, commits = ledger_appends(root / f"sqlite-{round_}", WRITERS, args.appends // WRITERS)
            rows["SQLite, 1 process x 64 threads"].append((rate, commits))
            for label, count, mode in [("PostgreSQL, 1 process x 64 threads", 1, "threads"),
                                       ("PostgreSQL, 2 processes x 32 threads", 2, "threads"),
                                       ("PostgreSQL, 2 processes x 32 tasks", 2, "tasks")]:
                home = root / f"{count}-{mode}-{round_}"
                home.mkdir()
                database = server.create_database(f"bench_{count}_{mode}_{round_}")
                rows[label].append(processes(home, database, count, mode, args.appends))
        baseline = [rate for rate, _ in rows["SQLite, 1 process x 64 threads"]]
        print(f"\n{'durable appends/s, median':<40}{'rate':>10}{'vs SQLite':>11}{'commits':>9}   [each round]")
        for label, results in rows.items():
            rate = statistics.median(r for r, _ in results)
            ratio = statistics.median(r / b for (r, _), b in zip(results, baseline))
            commits = statistics.median(c for _, c in results)
            print(f"  {label:<38}{rate:>10,.0f}{ratio:>10.2f}x{commits:>9,.0f}   "
                  f"[{', '.join(f'{r:,.0f}' for r, _ in results)}]")
    finally:
        server.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
