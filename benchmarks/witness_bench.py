"""Witness benchmark: one witness cycle on a peer tree of 1,000,000 entries.

    python benchmarks/witness_bench.py [--entries 1000000] [--cycles 500] [--ledger-entries 1000000] [--dir DIR]

A cycle is what :func:`scheduler.ledger.witness.witness` does with what the
peer served: verify the head's Ed25519 signature and the checkpoint note's,
verify the consistency proof from the last witnessed head (O(log n) hashes),
then cosign (the JSON cosignature and the ``cosignature/v1`` line, two
Ed25519 signatures). Measured, in one run:

1. the baseline: one Ed25519 verification, and one Ed25519 signature;
2. the cycle on a synthetic peer tree of ``--entries`` leaves (every subtree
   hash kept in memory, so proofs come from the real tree, not a stand-in),
   each cycle from a random witnessed size to a head a few thousand entries
   later, and its parts;
3. with ``--ledger-entries`` > 0, a real :class:`~scheduler.ledger.Ledger`
   of that many entries (built with ``append_many``, as in ledger_bench.py,
   about 90 s for 1,000,000 on 2 cores): the time to fetch a consistency
   proof and the latest tree head from it, and the whole cycle with that fetch.

Goal: a witness cycle under 50 ms at 1,000,000 entries.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from scheduler.ledger import Ledger, LedgerReader, merkle
from scheduler.ledger.checkpoint import sign_tree_head_checkpoint
from scheduler.ledger.entry import utc_now
from scheduler.ledger.signing import PublicKey, sign_tree_head
from scheduler.ledger.witness import WitnessState, check_peer_head, witness

GOAL_MS = 50.0
BUILD_BATCH = 10_000


class SyntheticTree:
    """Every complete subtree hash of a tree of ``size`` synthetic leaves: ``levels[l][i]``."""

    def __init__(self, size: int) -> None:
        level = [merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(size)]
        self.levels = [level]
        while len(level) > 1:
            level = [merkle.node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            self.levels.append(level)

    def subtree(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    def root(self, size: int) -> bytes:
        return merkle.range_hash(0, size, self.subtree)

    def consistency_path(self, first: int, second: int) -> list[str]:
        ranges = merkle.consistency_path_ranges(first, second)
        return [merkle.range_hash(start, end, self.subtree).hex() for start, end in ranges]


def timed(samples: int, work: Callable[[int], object]) -> list[float]:
    """Seconds taken by ``work(i)`` for i in range(samples), after two warm-up calls."""
    work(0)
    work(1 % samples)
    out = []
    for i in range(samples):
        began = time.perf_counter()
        work(i)
        out.append(time.perf_counter() - began)
    return out


def summary(values: list[float]) -> tuple[float, float, float]:
    """(mean, p50, p99) in milliseconds."""
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.fmean(values) * 1e3, statistics.median(values) * 1e3, p99 * 1e3


def row(label: str, values: list[float], base: float) -> float:
    mean, p50, p99 = summary(values)
    print(f"  {label:<52}{mean:>9.3f}{p50:>9.3f}{p99:>9.3f}{p50 / base:>9.1f}x")
    return mean


def header(title: str) -> None:
    print(f"\n{title:<54}{'mean':>9}{'p50':>9}{'p99':>9}{'p50 ratio':>10}   (ms; ratio to one verify)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=1_000_000, help="size of the synthetic peer tree")
    parser.add_argument("--cycles", type=int, default=500, help="witness cycles to time")
    parser.add_argument("--ledger-entries", type=int, default=1_000_000,
                        help="size of the real ledger to fetch proofs from (0: skip)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the real ledger (default: a temp dir)")
    args = parser.parse_args()

    peer_key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"bench DE ledger").digest())
    site_key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"bench FR ledger").digest())
    published = PublicKey.of(peer_key.public_key()).model_dump()
    print(f"Corridor witness benchmark: peer tree of {args.entries:,} entries, {args.cycles} cycles")

    # 1. Baseline, in this run.
    message = b'{"key_id":"' + b"ab" * 32 + b'","root_hash":"' + b"cd" * 32 + b'","timestamp":"x","tree_size":1}'
    signature = peer_key.sign(message)
    public = peer_key.public_key()
    verify_s = timed(args.cycles, lambda i: public.verify(signature, message))
    sign_s = timed(args.cycles, lambda i: site_key.sign(message))
    base = statistics.median(verify_s) * 1e3

    # 2. The synthetic tree and the heads a peer would serve.
    began = time.perf_counter()
    tree = SyntheticTree(args.entries)
    print(f"  synthetic tree built in {time.perf_counter() - began:.1f} s")
    rng = random.Random(6962)
    cases = []
    for i in range(args.cycles):
        second = args.entries - rng.randrange(0, 1000)
        first = max(1, second - rng.randrange(1, 5000))
        last_head = sign_tree_head(peer_key, first, tree.root(first), utc_now())
        head = sign_tree_head(peer_key, second, tree.root(second), utc_now()).model_dump()
        note = sign_tree_head_checkpoint("DE", head, peer_key)
        cases.append((WitnessState.of_tree_head("DE", last_head), head, tree.consistency_path(first, second), note))
    path_lengths = [len(p) for _, _, p, _ in cases]

    def cycle(i: int):
        last, head, path, note = cases[i]
        return witness(site="FR", signing_key=site_key, peer_site="DE", peer_key=published, last=last,
                       tree_head=head, consistency_proof=path, checkpoint=note)

    def proof_only(i: int) -> None:
        last, head, path, _ = cases[i]
        merkle.verify_consistency(last.tree_size, head["tree_size"], [bytes.fromhex(h) for h in path],
                                  bytes.fromhex(last.root_hash), bytes.fromhex(head["root_hash"]))

    def checks_only(i: int):
        last, head, path, note = cases[i]
        return check_peer_head(peer_site="DE", peer_key=published, last=last, tree_head=head,
                               consistency_proof=path, checkpoint=note)

    header("baseline")
    row("Ed25519 verify (one signature)", verify_s, base)
    row("Ed25519 sign (one signature)", sign_s, base)
    header(f"witness cycle at {args.entries:,} entries")
    row(f"consistency proof verify ({min(path_lengths)}-{max(path_lengths)} hashes)", timed(args.cycles, proof_only), base)
    row("checks: head + checkpoint signatures, fork, proof", timed(args.cycles, checks_only), base)
    cycle_ms = row("whole cycle: checks + JSON and C2SP cosignatures", timed(args.cycles, cycle), base)
    assert cycle(0).state.tree_size == cases[0][1]["tree_size"]
    cases.clear()  # free the tree's memory before building the real ledger
    tree = None

    # 3. A real ledger.
    real_cycle_ms = None
    if args.ledger_entries > 0:
        root = Path(tempfile.mkdtemp(prefix="witness-bench-", dir=args.dir))
        try:
            key_path = root / "peer-key.pem"
            from cryptography.hazmat.primitives import serialization

            key_path.write_bytes(peer_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
            began = time.perf_counter()
            drafts = [{"kind": "placement", "tenant": "de-bund", "decision_id": f"dec-{i}", "allowed": True,
                       "pool": "de-frankfurt", "jurisdiction": "DE", "policy_digest": "9f" * 32}
                      for i in range(BUILD_BATCH)]
            with Ledger.open(root, signing_key_path=key_path) as ledger:
                done = 0
                while done < args.ledger_entries:
                    count = min(BUILD_BATCH, args.ledger_entries - done)
                    ledger.append_many(drafts[:count])
                    done += count
                ledger.latest_tree_head()
            print(f"\n  real ledger of {args.ledger_entries:,} entries built in {time.perf_counter() - began:.1f} s")
            with LedgerReader.open(root, public_key=peer_key.public_key()) as reader:
                size = reader.size
                head = reader.latest_tree_head()
                note = sign_tree_head_checkpoint("DE", head, peer_key)
                firsts = [max(1, size - rng.randrange(1, 5000)) for _ in range(args.cycles)]
                lasts = [WitnessState(site="DE", tree_size=f, root_hash=reader.root_hash(f), timestamp=utc_now())
                         for f in firsts]

                def fetch(i: int) -> None:
                    reader.latest_tree_head()
                    reader.consistency_proof(firsts[i], size)

                def real_cycle(i: int):
                    served = reader.latest_tree_head()
                    proof = reader.consistency_proof(firsts[i], served["tree_size"])
                    return witness(site="FR", signing_key=site_key, peer_site="DE", peer_key=published,
                                   last=lasts[i], tree_head=served, consistency_proof=proof, checkpoint=note)

                header(f"real Ledger of {size:,} entries (SQLite)")
                row("fetch: latest tree head + consistency proof", timed(args.cycles, fetch), base)
                real_cycle_ms = row("whole cycle with the fetch", timed(args.cycles, real_cycle), base)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    print("\ngoals")
    checks = [(f"witness cycle < {GOAL_MS:g} ms at {args.entries:,}", cycle_ms)]
    if real_cycle_ms is not None:
        checks.append((f"cycle with fetch < {GOAL_MS:g} ms at {args.ledger_entries:,}", real_cycle_ms))
    for goal, figure in checks:
        print(f"  {goal:<52}{figure:>9.3f} ms   {'met' if figure < GOAL_MS else 'MISSED'}")


if __name__ == "__main__":
    main()
