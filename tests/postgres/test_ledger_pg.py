"""One ledger in PostgreSQL, appended to by several processes: one order, no gap, no fork.

The processes are real OS processes (``python -c CHILD``) with their own connection pools;
each prints an acknowledgement line once an append returned, so the test knows exactly which
entries were acknowledged before it killed anything.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from scheduler.database import DatabaseUnavailable
from scheduler.ledger import (
    KEY_FILENAME,
    Ledger,
    LedgerEntryDraft,
    LedgerReader,
    LedgerUnavailableError,
    StorageError,
    merkle,
    open_ledger,
)
from scheduler.ledger.pg_store import PgStore
from scheduler.ledger.signing import TreeHead, load_or_generate_signing_key

ROOT = Path(__file__).resolve().parents[2]

# Waits for a line on stdin, then appends from 8 threads: "A <index> <name> <worker> <seq>" per
# acknowledged append ("count" appends per thread, or forever when count is 0), and every 10 ms
# "H <tree head JSON>"; at the end the final head, then "DONE".
CHILD = r"""
import json, os, sys, threading, time
from scheduler.ledger import LedgerEntryDraft, open_ledger

home, database, name, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ledger = open_ledger(home, database=database)
lock = threading.Lock()
def say(line):
    with lock:
        os.write(1, (line + "\n").encode())
sys.stdin.readline()

def work(worker):
    seq = 0
    while count == 0 or seq < count:
        item = ledger.append(LedgerEntryDraft(kind="placement", tenant=name, detail={"worker": worker, "seq": seq}))
        say(f"A {item['index']} {name} {worker} {seq}")
        seq += 1

stop = threading.Event()
def heads():
    while not stop.wait(0.01):
        say("H " + json.dumps(ledger.latest_tree_head()))

workers = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(8)]
for thread in workers:
    thread.start()
threading.Thread(target=heads, daemon=True).start()
for thread in workers:
    thread.join()
stop.set()
say("H " + json.dumps(ledger.latest_tree_head()))
ledger.close()
say("DONE")
"""


class Child:
    """One appending process and the lines it printed."""

    def __init__(self, home: Path, database: str, name: str, count: int) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(home), database, name, str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.acknowledged: dict[int, tuple[str, int, int]] = {}
        self.heads: list[dict] = []
        self.done = False
        self.reader = threading.Thread(
            target=lambda: [self.lines.put(line.decode()) for line in self.process.stdout], daemon=True)
        self.reader.start()

    def go(self) -> None:
        self.process.stdin.write(b"go\n")
        self.process.stdin.flush()

    def drain(self, timeout: float = 0.0) -> None:
        """Record the lines printed so far (waiting up to ``timeout`` for the first)."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                return
            timeout = 0.0
            kind, _, rest = line.strip().partition(" ")
            if kind == "A":
                index, name, worker, seq = rest.split()
                assert int(index) not in self.acknowledged, f"{self.name} acknowledged index {index} twice"
                self.acknowledged[int(index)] = (name, int(worker), int(seq))
            elif kind == "H":
                self.heads.append(json.loads(rest))
            elif kind == "DONE":
                self.done = True

    def wait_for(self, acknowledged: int, deadline: float) -> None:
        while len(self.acknowledged) < acknowledged:
            ended = not self.reader.is_alive() and self.lines.empty()  # exited, and every line read
            if time.monotonic() > deadline or ended:
                raise AssertionError(f"{self.name} stalled at {len(self.acknowledged)} acknowledged: "
                                     f"{self.process.stderr.read1().decode() if ended else ''}")
            self.drain(timeout=0.2)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self.reader.join(timeout=10)  # it hands over what the pipe still held
        self.drain()


def _check_acknowledged(reader: LedgerReader, children: list[Child]) -> dict[int, tuple[str, int, int]]:
    """Every acknowledged index holds what its process appended, and no index was acknowledged twice."""
    everything: dict[int, tuple[str, int, int]] = {}
    for child in children:
        assert not everything.keys() & child.acknowledged.keys(), "two processes were acknowledged one index"
        everything |= child.acknowledged
    for index, (name, worker, seq) in everything.items():
        entry = reader.get(index)["entry"]
        assert (entry["tenant"], entry["detail"]) == (name, {"worker": worker, "seq": seq}), index
    return everything


def _verify_head(reader: LedgerReader, head: dict, home: Path) -> None:
    """The head is signed by the site's key and its root is the one the shared store serves."""
    TreeHead.model_validate(head).verify(load_or_generate_signing_key(home / KEY_FILENAME).public_key())
    assert reader.root_hash(head["tree_size"]) == head["root_hash"]


def test_two_processes_append_into_one_log_in_one_order(tmp_path: Path, postgres_url: str) -> None:
    per_thread = 100
    children = [Child(tmp_path, postgres_url, name, per_thread) for name in ("fr-a", "fr-b")]
    for child in children:
        child.go()
    deadline = time.monotonic() + 90
    for child in children:
        child.wait_for(8 * per_thread, deadline)
        child.reader.join(timeout=max(0.0, deadline - time.monotonic()))
        child.drain()
        assert child.done
        assert child.process.wait(timeout=30) == 0, child.process.stderr.read().decode()

    total = 2 * 8 * per_thread
    with LedgerReader.open(tmp_path, database=postgres_url) as reader:
        everything = _check_acknowledged(reader, children)
        assert sorted(everything) == list(range(total))  # consecutive: no gap, no duplicate
        report = reader.verify()
        assert (report.size, report.unsigned) == (total, 0)
        # The processes really interleaved: their indexes alternate more than once.
        owners = [everything[index][0] for index in range(total)]
        assert sum(a != b for a, b in itertools.pairwise(owners)) > 2

        # A head signed by one process agrees with proofs served from the shared store, and
        # with the heads of the other: consistency proofs between them verify.
        heads = {child.name: child.heads for child in children}
        assert all(heads.values())
        for head in heads["fr-a"] + heads["fr-b"]:
            _verify_head(reader, head, tmp_path)
        pairs = [(a, b) for a in heads["fr-a"][::7] for b in heads["fr-b"][::7] if a["tree_size"] and b["tree_size"]]
        assert pairs
        for a, b in pairs:
            first, second = sorted((a, b), key=lambda head: head["tree_size"])
            proof = reader.consistency_proof(first["tree_size"], second["tree_size"])["consistency_path"]
            merkle.verify_consistency(first["tree_size"], second["tree_size"], [bytes.fromhex(h) for h in proof],
                                      bytes.fromhex(first["root_hash"]), bytes.fromhex(second["root_hash"]))


def test_a_process_killed_mid_append_while_another_keeps_appending(tmp_path: Path, postgres_url: str) -> None:
    killed, survivor = Child(tmp_path, postgres_url, "killed", 0), Child(tmp_path, postgres_url, "survivor", 0)
    killed.go()
    survivor.go()
    deadline = time.monotonic() + 60
    try:
        killed.wait_for(300, deadline)
        survivor.wait_for(300, deadline)
        killed.kill()
        after_kill = len(survivor.acknowledged)
        survivor.wait_for(after_kill + 400, deadline)  # the survivor goes on past the dead writer
    finally:
        killed.kill()
        survivor.kill()
    assert killed.process.returncode == survivor.process.returncode == -signal.SIGKILL

    with LedgerReader.open(tmp_path, database=postgres_url) as reader:
        everything = _check_acknowledged(reader, [killed, survivor])
        report = reader.verify()
        assert report.size > max(everything)
        assert max(survivor.acknowledged) > max(killed.acknowledged)
    with open_ledger(tmp_path, database=postgres_url) as ledger:  # a new process carries on
        assert ledger.append(LedgerEntryDraft(kind="security"))["index"] == report.size
        assert ledger.latest_tree_head()["tree_size"] == report.size + 1
        assert ledger.verify().unsigned == 0


def test_replicas_in_one_process_share_heads_and_proofs(tmp_path: Path, postgres_url: str) -> None:
    a = open_ledger(tmp_path, database=postgres_url)
    b = open_ledger(tmp_path, database=postgres_url)
    try:
        assert [a.append(LedgerEntryDraft(kind="routing"))["index"] for _ in range(5)] == list(range(5))
        assert [item["index"] for item in b.append_many([LedgerEntryDraft(kind="routing")] * 3)] == [5, 6, 7]
        assert a.size == b.size == 8  # each sees what the other committed
        head_a = a.latest_tree_head()
        assert b.latest_tree_head() == head_a  # b reuses the head a signed of the same size
        a.append(LedgerEntryDraft(kind="routing"))
        head_b = b.latest_tree_head()
        assert head_b["tree_size"] == 9
        leaf = bytes.fromhex(a.get(6)["leaf_hash"])
        path = [bytes.fromhex(h) for h in b.inclusion_proof(6, 8)["inclusion_path"]]
        merkle.verify_inclusion(6, 8, leaf, path, bytes.fromhex(head_a["root_hash"]))
        path = [bytes.fromhex(h) for h in a.consistency_proof(8, 9)["consistency_path"]]
        merkle.verify_consistency(8, 9, path, bytes.fromhex(head_a["root_hash"]), bytes.fromhex(head_b["root_hash"]))
        assert [h["tree_size"] for h in a.tree_heads()] == [8, 9]
    finally:
        a.close()
        b.close()
    with LedgerReader.open(tmp_path, database=postgres_url) as reader:
        assert (reader.verify().size, len(reader.tree_heads())) == (9, 2)  # closing signed nothing new


def test_a_writer_whose_tree_differs_from_the_stored_one_refuses_to_append(tmp_path: Path, postgres_url: str) -> None:
    a = open_ledger(tmp_path, database=postgres_url)
    b = open_ledger(tmp_path, database=postgres_url)
    try:
        a.append_many([LedgerEntryDraft(kind="routing")] * 4)
        with psycopg.connect(postgres_url) as connection:  # an intruder rewrites the subtree of [0, 4)
            connection.execute("SET session_replication_role = replica")
            connection.execute("UPDATE entries SET subtrees = %s WHERE idx = 3", (b"\x00" * 64,))
        b.append(LedgerEntryDraft(kind="routing"))  # b never saw [0, 4) and builds on what is stored
        with pytest.raises(StorageError, match="fork"):
            a.append(LedgerEntryDraft(kind="routing"))
    finally:
        a.close()
        b.close()


def test_the_tables_are_append_only(tmp_path: Path, postgres_url: str) -> None:
    with open_ledger(tmp_path, database=postgres_url) as ledger:
        ledger.append(LedgerEntryDraft(kind="routing"))
        ledger.latest_tree_head()
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        for statement in ("UPDATE entries SET tenant = 'x'", "DELETE FROM entries", "TRUNCATE entries",
                          "UPDATE tree_heads SET tree_size = 0", "DELETE FROM tree_heads", "TRUNCATE tree_heads"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                connection.execute(statement)
        assert connection.execute("SELECT count(*) FROM entries").fetchone() == (1,)


def test_a_reader_needs_an_existing_ledger_and_finds_entries_by_decision_id(tmp_path: Path, postgres_url: str) -> None:
    from scheduler.ledger import NotFoundError

    with pytest.raises(NotFoundError, match="no ledger in database"):
        LedgerReader.open(tmp_path, database=postgres_url)
    with open_ledger(tmp_path, database=postgres_url) as ledger:
        ledger.append_many(LedgerEntryDraft(kind="placement", decision_id=f"dec-{i}") for i in range(30))
    with LedgerReader.open(tmp_path, database=postgres_url) as reader:
        assert [item["index"] for item in reader.entries(decision_id="dec-17")["data"]] == [17]
    with psycopg.connect(postgres_url) as connection:  # the lookup is served by the index on the leaf
        connection.execute("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in connection.execute(
            "EXPLAIN SELECT idx FROM entries WHERE ledger_decision_id(leaf) = 'dec-17'").fetchall())
    assert "entries_by_decision" in plan


def test_a_stopped_database_fails_appends_within_the_timeout_and_they_resume_after_restart(
    tmp_path: Path, postgres_server, postgres_url: str
) -> None:
    key = load_or_generate_signing_key(tmp_path / KEY_FILENAME)
    ledger = Ledger(PgStore(postgres_url, writer=True, timeout=2.0), key)
    try:
        acknowledged = [ledger.append(LedgerEntryDraft(kind="routing", detail={"seq": i}))["index"]
                        for i in range(20)]
        postgres_server.stop("immediate")
        try:
            for _ in range(2):
                began = time.monotonic()
                with pytest.raises(DatabaseUnavailable) as info:
                    ledger.append(LedgerEntryDraft(kind="routing", detail={"seq": "down"}))
                assert time.monotonic() - began < 8, "an append waited past the pool's timeout"
                assert isinstance(info.value, LedgerUnavailableError)
            with pytest.raises(DatabaseUnavailable):
                asyncio.run(ledger.append_async(LedgerEntryDraft(kind="routing")))
            with pytest.raises(DatabaseUnavailable):
                ledger.latest_tree_head()
        finally:
            postgres_server.start()
        deadline = time.monotonic() + 30
        while True:  # the pool reconnects on its own; the same process appends again
            try:
                item = ledger.append(LedgerEntryDraft(kind="routing", detail={"seq": "back"}))
                break
            except DatabaseUnavailable:
                assert time.monotonic() < deadline, "appends did not resume after the database came back"
                time.sleep(0.5)
        assert item["index"] >= len(acknowledged)
        assert [ledger.get(i)["entry"]["detail"] for i in acknowledged] == [{"seq": i} for i in range(20)]
        report = ledger.verify()
        assert report.size == item["index"] + 1
    finally:
        ledger.close()


@pytest.mark.postgres
def test_audit_verify_of_an_unreachable_database_exits_2_with_the_reason(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from serving.cli.audit import app
    from serving.loopback import free_port

    url = f"postgresql://corridor:secret@127.0.0.1:{free_port()}/corridor"  # nothing listens there
    load_or_generate_signing_key(tmp_path / KEY_FILENAME)
    result = CliRunner().invoke(app, ["verify", "--home", str(tmp_path), "--database", url])
    assert result.exit_code == 2, result.output
    assert "did not answer" in result.output and "secret" not in result.output
