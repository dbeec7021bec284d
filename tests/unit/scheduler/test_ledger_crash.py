"""SIGKILL during appends: no acknowledged entry is lost and the log still verifies (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ledger_backends import BACKENDS, ledger_database
from scheduler.ledger import Ledger, LedgerEntryDraft, LedgerReader

ROOT = Path(__file__).resolve().parents[3]

# Appends from 16 threads and prints "<index> <worker> <seq>" once each append returned;
# another thread asks for tree heads all along, so some are issued mid-run.
CHILD = r"""
import os, sys, threading, time
from scheduler.ledger import LedgerEntryDraft, open_ledger

ledger = open_ledger(sys.argv[1], database=sys.argv[2] or None)
lock = threading.Lock()

def work(worker):
    seq = 0
    while True:
        item = ledger.append(LedgerEntryDraft(kind="placement", tenant=f"t{worker}", detail={"seq": seq}))
        with lock:
            os.write(1, f"{item['index']} {worker} {seq}\n".encode())
        seq += 1

def heads():
    while True:
        ledger.latest_tree_head()
        time.sleep(0.005)

for worker in range(16):
    threading.Thread(target=work, args=(worker,), daemon=True).start()
threading.Thread(target=heads, daemon=True).start()
threading.Event().wait()
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_during_appends_loses_no_acknowledged_entry(tmp_path: Path, backend: str, request) -> None:
    database = ledger_database(request, backend)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), database or ""],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env,
    )
    lines: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in child.stdout], daemon=True)
    reader.start()
    acknowledged: dict[int, tuple[int, int]] = {}
    kill_after = random.randint(300, 1500)
    deadline = time.monotonic() + 40
    try:
        while len(acknowledged) < kill_after:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"child stalled: {child.stderr.read1().decode()}") from None
            index, worker, seq = map(int, line.split())
            acknowledged[index] = (worker, seq)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    reader.join(timeout=10)
    while not lines.empty():  # acknowledgements written before the kill
        index, worker, seq = map(int, lines.get().split())
        acknowledged[index] = (worker, seq)
    assert child.returncode == -signal.SIGKILL

    with LedgerReader.open(tmp_path, database=database) as log:
        report = log.verify()
        assert report.tree_heads > 0
        assert report.size > max(acknowledged)
        for index, (worker, seq) in acknowledged.items():
            entry = log.get(index)["entry"]
            assert (entry["tenant"], entry["detail"]) == (f"t{worker}", {"seq": seq})

    with Ledger.open(tmp_path, database=database) as ledger:  # the writer restarts where the durable log ends
        assert ledger.append(LedgerEntryDraft(kind="security"))["index"] == report.size
        assert ledger.latest_tree_head()["tree_size"] == report.size + 1
        assert ledger.verify().unsigned == 0
