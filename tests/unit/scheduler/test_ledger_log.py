"""The Ledger: appends, group commit, queries, proofs, tree heads, keys, on a real SQLite file
(and, where the storage matters, on PostgreSQL too)."""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ledger_backends import BACKENDS, ledger_database
from policies.canonical import canonical_json
from scheduler.ledger import (
    InvalidEntryError,
    Ledger,
    LedgerClosedError,
    LedgerEntry,
    LedgerEntryDraft,
    LedgerLockedError,
    LedgerReader,
    NotFoundError,
    ProofInputError,
    PublicKey,
    SqliteStore,
    StorageError,
    TreeHead,
    Workload,
    merkle,
)
from scheduler.ledger.entry import ENTRY_KEYS
from scheduler.ledger.log import _Batch
from scheduler.ledger.signing import KEY_FILENAME, generate_signing_key, load_or_generate_signing_key


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest) -> str | None:
    """None (SQLite in the home), or a fresh PostgreSQL database."""
    return ledger_database(request, request.param)


@pytest.fixture
def ledger(tmp_path: Path, database: str | None) -> Iterator[Ledger]:
    """An empty ledger in ``tmp_path / "home"`` on each backend, closed after the test."""
    with Ledger.open(tmp_path / "home", database=database) as opened:
        yield opened


def draft(seq: int = 0, **fields) -> LedgerEntryDraft:
    values = {
        "kind": "placement",
        "tenant": "fr-interior",
        "jurisdiction": "FR",
        "allowed": True,
        "reasons": ["OK"],
        "detail": {"seq": seq},
    }
    values.update(fields)
    return LedgerEntryDraft(**values)


class SlowDisk(SqliteStore):
    """A SQLite store on a slow disk: each commit takes 5 ms more, so concurrent appends pile up."""

    def commit(self, leaves, tree_heads) -> None:
        time.sleep(0.005)
        super().commit(leaves, tree_heads)


class FailingOnce(SqliteStore):
    """A SQLite store whose next commit fails, as a full disk would."""

    fail_next = False

    def commit(self, leaves, tree_heads) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StorageError("disk full")
        super().commit(leaves, tree_heads)


class CountingReads(SqliteStore):
    """A SQLite store that records how many subtree hashes each proof asks for."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[int] = []

    def subtree_hashes(self, keys):
        self.requests.append(len(keys))
        return super().subtree_hashes(keys)


def open_with(store_class, home: Path) -> Ledger:
    key = load_or_generate_signing_key(home / KEY_FILENAME)
    return Ledger(store_class(home / "ledger.db", writer=True), key)


def test_append_assigns_index_and_timestamp_and_returns_the_item(ledger: Ledger) -> None:
    workload = Workload(
        kind="replica", model="corridor-tiny", marking="DR", data_flags=["health"], resources={"gpus": 1}
    )
    first = ledger.append(draft(workload=workload, pool="fr-paris", node_id="n1", policy_digest="d" * 64))
    second = ledger.append({"kind": "security", "detail": {"bad_digest": "x"}})
    assert [first["index"], second["index"]] == [0, 1]
    assert set(first["entry"]) == ENTRY_KEYS
    assert first["entry"]["workload"] == {
        "kind": "replica", "model": "corridor-tiny", "marking": "DR", "data_flags": ["health"],
        "resources": {"gpus": 1},
    }
    assert second["entry"] | {"timestamp": "t"} == {
        "index": 1, "timestamp": "t", "kind": "security", "decision_id": None, "tenant": None, "workload": None,
        "pool": None, "jurisdiction": None, "node_id": None, "allowed": None, "reasons": [], "policy_digest": None,
        "declaration": None, "detail": {"bad_digest": "x"},
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["entry"]["timestamp"])
    assert LedgerEntry.model_validate(first["entry"]).index == 0
    assert ledger.get(1) == second
    assert ledger.size == 2


def test_leaf_bytes_are_the_canonical_json_of_the_entry(ledger: Ledger) -> None:
    item = ledger.append(draft(detail={"zeta": "é", "alpha": [3, 1]}))
    stored = ledger.store.leaf(item["index"])
    assert stored.leaf == canonical_json(item["entry"])
    assert "é".encode() in stored.leaf
    assert item["leaf_hash"] == merkle.leaf_hash(stored.leaf).hex() == stored.leaf_hash.hex()


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "placement", "prompt": "tell me a secret"},
        {"kind": "placement", "index": 3},
        {"kind": "placement", "timestamp": "2025-01-01T00:00:00.000000Z"},
        {"kind": "placement", "workload": {"kind": "request", "completion": "text"}},
        {"kind": "billing"},
        {"kind": "placement", "jurisdiction": "IT"},
        {"kind": "placement", "detail": {"labels": {"gpu"}}},
        {"kind": "placement", "detail": {"score": float("nan")}},
        {"kind": "placement", "workload": {"kind": "replica", "resources": {"since": datetime.now(UTC)}}},
    ],
    ids=["prompt text", "index set by the caller", "timestamp set by the caller", "completion in the workload",
         "unknown kind", "unknown jurisdiction", "a set in the detail", "NaN in the detail",
         "a datetime in the resources"],
)
def test_a_draft_with_unknown_assigned_or_invalid_fields_is_refused(ledger: Ledger, fields: dict) -> None:
    with pytest.raises(InvalidEntryError):
        ledger.append(fields)
    assert ledger.size == 0


def test_get_of_a_missing_index_raises_not_found(ledger: Ledger) -> None:
    with pytest.raises(NotFoundError, match="no entry at index 0"):
        ledger.get(0)


def test_entries_are_filtered_and_paged(ledger: Ledger) -> None:
    ledger.append_many(draft(i, tenant=["a", "b"][i % 2], jurisdiction=["FR", "DE", None][i % 3]) for i in range(10))
    time.sleep(0.002)
    middle = datetime.now(UTC)
    time.sleep(0.002)
    ledger.append_many(draft(i, tenant="a", kind="violation") for i in range(10, 15))

    def indexes(**filters) -> list[int]:
        return [item["index"] for item in ledger.entries(**filters)["data"]]

    assert indexes(tenant="a") == [0, 2, 4, 6, 8, 10, 11, 12, 13, 14]
    assert indexes(kind="violation") == [10, 11, 12, 13, 14]
    assert indexes(jurisdiction="DE") == [1, 4, 7]
    assert indexes(tenant="b", jurisdiction="FR") == [3, 9]
    assert indexes(since=middle) == [10, 11, 12, 13, 14]
    assert indexes(until=middle) == list(range(10))
    assert indexes(since=middle + timedelta(hours=1)) == []

    page = ledger.entries(tenant="a", limit=4)
    assert [item["index"] for item in page["data"]] == [0, 2, 4, 6] and page["has_more"] is True
    page = ledger.entries(tenant="a", after=6, limit=4)
    assert [item["index"] for item in page["data"]] == [8, 10, 11, 12] and page["has_more"] is True
    page = ledger.entries(tenant="a", after=12, limit=4)
    assert [item["index"] for item in page["data"]] == [13, 14] and page["has_more"] is False
    assert page["data"][0] == ledger.get(13)

    with pytest.raises(ValueError, match="got naive datetime"):
        ledger.entries(since=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="limit: got 0"):
        ledger.entries(limit=0)


def test_tree_heads_are_signed_on_demand_and_on_close_and_all_persisted(tmp_path: Path, database: str | None) -> None:
    ledger = Ledger.open(tmp_path, database=database)
    empty = ledger.latest_tree_head()
    assert empty["tree_size"] == 0 and empty["root_hash"] == merkle.EMPTY_ROOT.hex()
    ledger.append_many(draft(i) for i in range(3))
    head = ledger.latest_tree_head()
    assert head["tree_size"] == 3 and head["root_hash"] == ledger.root_hash(3)
    assert ledger.latest_tree_head() == head  # no change, no new head
    ledger.append(draft(3))
    ledger.close()

    reader = LedgerReader.open(tmp_path, database=database)
    heads = reader.tree_heads()
    assert [h["tree_size"] for h in heads] == [0, 3, 4]
    assert reader.latest_tree_head() == heads[-1]
    public_key = reader.public_key()
    for h in heads:
        TreeHead.model_validate(h).verify(PublicKey.model_validate(public_key).load())
        assert h["key_id"] == public_key["key_id"]
    for older, newer in zip(heads[1:], heads[2:], strict=False):
        proof = reader.consistency_proof(older["tree_size"], newer["tree_size"])
        merkle.verify_consistency(
            older["tree_size"], newer["tree_size"], [bytes.fromhex(h) for h in proof["consistency_path"]],
            bytes.fromhex(older["root_hash"]), bytes.fromhex(newer["root_hash"]),
        )
    reader.close()


def test_reopening_continues_the_log_and_it_still_verifies(tmp_path: Path, database: str | None) -> None:
    with Ledger.open(tmp_path, database=database) as ledger:
        hashes = [bytes.fromhex(item["leaf_hash"]) for item in ledger.append_many(draft(i) for i in range(5))]
    with Ledger.open(tmp_path, database=database) as ledger:
        assert ledger.size == 5
        hashes += [bytes.fromhex(ledger.append(draft(5))["leaf_hash"])]
        assert ledger.get(5)["index"] == 5
        assert ledger.latest_tree_head()["root_hash"] == merkle.root_from_leaf_hashes(hashes).hex()
        report = ledger.verify()
    assert (report.size, report.signed_size, report.unsigned) == (6, 6, 0)


def test_the_signing_key_is_created_private_once_and_reused(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        key_id = ledger.public_key()["key_id"]
    path = tmp_path / KEY_FILENAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    with Ledger.open(tmp_path) as ledger:
        assert ledger.public_key()["key_id"] == key_id
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        generate_signing_key(path)
    assert path.read_bytes() == before


def test_a_supplied_signing_key_file_is_used(tmp_path: Path) -> None:
    supplied = tmp_path / "secrets" / "key.pem"
    supplied.parent.mkdir()
    key = generate_signing_key(supplied)
    with Ledger.open(tmp_path / "home", signing_key_path=supplied) as ledger:
        ledger.append(draft())
        head = ledger.latest_tree_head()
    TreeHead.model_validate(head).verify(key.public_key())
    assert not (tmp_path / "home" / KEY_FILENAME).exists()


def test_a_second_writer_is_refused_while_readers_are_not(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        ledger.append(draft())
        with pytest.raises(LedgerLockedError, match="another process"):
            Ledger.open(tmp_path)
        with LedgerReader.open(tmp_path) as reader:
            assert reader.size == 1 and reader.get(0) == ledger.get(0)
            ledger.append(draft(1))
            assert reader.size == 2
    Ledger.open(tmp_path).close()  # the lock goes with the writer


def test_opening_a_missing_ledger_read_only_raises_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="no ledger database"):
        LedgerReader.open(tmp_path)


def test_appending_after_close_is_refused(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path)
    ledger.close()
    with pytest.raises(LedgerClosedError):
        ledger.append(draft())
    with pytest.raises(LedgerClosedError):
        asyncio.run(ledger.append_async(draft()))


def test_concurrent_appends_are_group_committed_with_contiguous_indexes(tmp_path: Path) -> None:
    ledger = open_with(SlowDisk, tmp_path)
    threads, per_thread = 32, 25
    seen: dict[int, list[int]] = {}

    def work(worker: int) -> None:
        seen[worker] = [ledger.append(draft(i, tenant=f"t{worker}"))["index"] for i in range(per_thread)]

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    total = threads * per_thread
    assert sorted(i for indexes in seen.values() for i in indexes) == list(range(total))
    assert all(indexes == sorted(indexes) for indexes in seen.values())
    assert ledger.commits < total / 4, ledger.commits
    for worker, indexes in seen.items():
        assert {ledger.get(i)["entry"]["tenant"] for i in indexes} == {f"t{worker}"}
    assert ledger.verify().size == total
    ledger.close()


def test_append_many_is_one_transaction(ledger: Ledger) -> None:
    before = ledger.commits
    items = ledger.append_many(draft(i) for i in range(300))
    assert [item["index"] for item in items] == list(range(300))
    assert ledger.commits == before + 1
    assert ledger.append_many([]) == []


def test_append_async_awaits_durability_without_blocking_the_loop(tmp_path: Path) -> None:
    ledger = open_with(SlowDisk, tmp_path)

    async def scenario() -> tuple[list[int], int]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        items = await asyncio.gather(*(ledger.append_async(draft(i)) for i in range(40)))
        stop.set()
        await task
        return [item["index"] for item in items], ticks

    indexes, ticks = asyncio.run(scenario())
    assert sorted(indexes) == list(range(40))
    assert ticks > 10  # the loop kept running while the writer committed
    assert ledger.commits < 40
    ledger.close()


def test_a_failed_commit_acknowledges_nothing_and_the_log_stays_contiguous(tmp_path: Path) -> None:
    ledger = open_with(FailingOnce, tmp_path)
    ledger.append(draft(0))
    ledger.store.fail_next = True
    with pytest.raises(StorageError, match="disk full"):
        ledger.append(draft(1))
    assert ledger.size == 1
    assert ledger.append(draft(2))["index"] == 1
    assert ledger.verify().size == 2
    ledger.close()


def test_proofs_read_a_logarithmic_number_of_stored_hashes(tmp_path: Path) -> None:
    ledger = open_with(CountingReads, tmp_path)
    ledger.append_many(draft(i) for i in range(1000))
    store = ledger.store
    for index, size in [(0, 1000), (999, 1000), (513, 777), (700, 1000)]:
        store.requests.clear()
        proof = ledger.inclusion_proof(index, size)
        assert len(store.requests) == 1 and store.requests[0] <= 2 * 10, store.requests
        merkle.verify_inclusion(
            index, size, bytes.fromhex(ledger.get(index)["leaf_hash"]),
            [bytes.fromhex(h) for h in proof["inclusion_path"]], bytes.fromhex(ledger.root_hash(size)),
        )
    store.requests.clear()
    ledger.consistency_proof(300, 1000)
    assert len(store.requests) == 1 and store.requests[0] <= 2 * 10
    ledger.close()


def test_proofs_outside_the_log_are_refused_with_got_and_want(ledger: Ledger) -> None:
    ledger.append_many(draft(i) for i in range(5))
    with pytest.raises(ProofInputError, match="tree_size: got 6, want 0 <= tree_size <= log size 5"):
        ledger.inclusion_proof(0, 6)
    with pytest.raises(ProofInputError, match="got index 5, want 0 <= index < tree size 5"):
        ledger.inclusion_proof(5, 5)
    with pytest.raises(ProofInputError, match="got first=0"):
        ledger.consistency_proof(0, 5)
    assert ledger.consistency_proof(5, 5)["consistency_path"] == []


def test_export_yields_items_optionally_filtered_and_with_inclusion_proofs(ledger: Ledger) -> None:
    ledger.append_many(draft(i, tenant=["a", "b", "c"][i % 3]) for i in range(12))
    assert list(ledger.export()) == [ledger.get(i) for i in range(12)]
    assert [item["index"] for item in ledger.export(tenant="b")] == [1, 4, 7, 10]
    lines = list(ledger.export(tenant="b", tree_size=8))
    assert [line["index"] for line in lines] == [1, 4, 7]
    root = bytes.fromhex(ledger.root_hash(8))
    for line in lines:
        assert line["tree_size"] == 8
        assert line["inclusion_path"] == ledger.inclusion_proof(line["index"], 8)["inclusion_path"]
        merkle.verify_inclusion(
            line["index"], 8, bytes.fromhex(line["leaf_hash"]), [bytes.fromhex(h) for h in line["inclusion_path"]], root
        )
    with pytest.raises(ProofInputError):
        list(ledger.export(tree_size=13))


def test_the_state_directory_and_key_are_not_readable_by_others(tmp_path: Path) -> None:
    home = tmp_path / "state"
    old = os.umask(0)
    try:
        Ledger.open(home).close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / KEY_FILENAME).stat().st_mode) == 0o600


def test_the_database_is_durable_and_append_only(tmp_path: Path) -> None:
    with Ledger.open(tmp_path) as ledger:
        ledger.append(draft())
        writer = ledger.store._write_connection
        assert writer.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert writer.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    connection = sqlite3.connect(tmp_path / "ledger.db")
    for statement in ("UPDATE entries SET tenant = 'x'", "DELETE FROM entries", "DELETE FROM tree_heads"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            connection.execute(statement)
    connection.close()


class Gate:
    """A waiter lock whose first wait is interrupted, as Ctrl-C interrupts the main thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.interrupted = False

    def acquire(self) -> None:
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        self.lock.acquire()

    def release(self) -> None:
        self.lock.release()


def test_an_interrupted_caller_still_wakes_the_callers_after_it_once_the_batch_is_settled() -> None:
    batch = _Batch()
    first, second = threading.Lock(), threading.Lock()
    first.acquire()
    second.acquire()
    gate = Gate()
    batch.waiters = [first, gate, second]
    woken: list[str] = []

    def wait(turn: int, name: str) -> None:
        try:
            batch.wait_turn(turn)
        except KeyboardInterrupt:
            woken.append(f"{name} (interrupted)")
        else:
            woken.append(name)

    callers = [threading.Thread(target=wait, args=(turn, name)) for turn, name in ((1, "gate"), (2, "second"))]
    for caller in callers:
        caller.start()
    time.sleep(0.05)
    assert woken == []  # nobody leaves before the batch is settled, interrupted or not
    first.release()  # the committer wakes the first caller, which wakes the next, and so on
    batch.wait_turn(0)
    for caller in callers:
        caller.join(timeout=5)
    assert sorted(woken) == ["gate (interrupted)", "second"]
