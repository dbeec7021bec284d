"""The batch store's contract, on both backends: SQLite + files (embedded default) and PostgreSQL
(file bytes in the database). The PostgreSQL cases carry the ``postgres`` marker."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from serving.batch.records import BatchError, BatchRecord, FileRecord, LineResult
from serving.batch.storage import CHUNK_BYTES
from serving.batch.store import BatchStore, open_batch_store

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def store(request, tmp_path):
    database = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    store = open_batch_store(tmp_path / "home", database=database)
    yield store
    store.close()


def _upload(store, tmp_path: Path, file_id: str, content: bytes, tenant: str = "fr-interior") -> FileRecord:
    staged = store.staging_path()
    staged.write_bytes(content)
    record = FileRecord(file_id, tenant, "input.jsonl", "batch", len(content), 1_700_000_000)
    store.add_file(record, staged)
    staged.unlink(missing_ok=True)
    return record


def _batch(batch_id: str = "batch_1", tenant: str = "fr-interior") -> BatchRecord:
    return BatchRecord(id=batch_id, tenant=tenant, input_file_id="file-in", endpoint="/v1/chat/completions",
                       completion_window="24h", marking="PUBLIC", data_flags=("personal",),
                       created_at=1_700_000_000, expires_at=1_700_086_400, metadata={"case": "x"})


def test_a_file_of_several_pieces_reads_back_byte_for_byte(store, tmp_path):
    content = os.urandom(CHUNK_BYTES * 2 + 12345)
    _upload(store, tmp_path, "file-big", content)
    with store.open_file("file-big") as handle:
        assert handle.read() == content
    assert store.get_file("file-big", "fr-interior").bytes == len(content)


def test_another_tenant_does_not_find_the_file_and_a_deleted_file_is_gone(store, tmp_path):
    _upload(store, tmp_path, "file-a", b'{"x":1}\n')
    assert store.get_file("file-a", "de-bund") is None
    assert store.delete_file("file-a", "de-bund") is False
    assert store.delete_file("file-a", "fr-interior") is True
    assert store.get_file("file-a", "fr-interior") is None
    with pytest.raises(FileNotFoundError):
        store.open_file("file-a")


def test_files_are_listed_newest_first_in_pages(store, tmp_path):
    for n in range(5):
        _upload(store, tmp_path, f"file-{n}", b"{}\n")
    first, more = store.list_files("fr-interior", after=None, limit=2, descending=True, purpose=None)
    assert [f.id for f in first] == ["file-4", "file-3"] and more
    rest, more = store.list_files("fr-interior", after="file-3", limit=10, descending=True, purpose=None)
    assert [f.id for f in rest] == ["file-2", "file-1", "file-0"] and not more
    ascending, _ = store.list_files("fr-interior", after="file-1", limit=10, descending=False, purpose="batch")
    assert [f.id for f in ascending] == ["file-2", "file-3", "file-4"]


def test_a_batch_round_trips_with_its_metadata_flags_and_errors(store):
    store.add_batch(_batch())
    store.update_batch("batch_1", status="failed", failed_at=5, errors=[BatchError("bad", "why", line=2)])
    got = store.get_batch("batch_1", "fr-interior")
    assert (got.status, got.failed_at, got.metadata, got.data_flags) == ("failed", 5, {"case": "x"}, ("personal",))
    assert got.errors == [BatchError("bad", "why", line=2)]
    assert store.get_batch("batch_1", "de-bund") is None
    assert store.active_batches() == []
    with pytest.raises(ValueError, match="update_batch"):
        store.update_batch("batch_1", tenant="de-bund")


def test_a_line_is_answered_once_and_counted_once(store):
    store.add_batch(_batch())
    store.start_lines("batch_1", "corridor-tiny", [(n, f"req-{n}", "{}") for n in range(4)], now=7)
    assert store.get_batch("batch_1").status == "in_progress"
    assert store.pending_count("batch_1") == 4
    first = [LineResult("batch_1", 0, '{"a":0}', True, 3, 5), LineResult("batch_1", 1, '{"a":1}', False)]
    assert store.record_results(first) == 2
    again = [LineResult("batch_1", 0, '{"a":"second"}', True, 3, 5), LineResult("batch_1", 2, '{"a":2}', True, 1, 1)]
    assert store.record_results(again) == 1
    record = store.get_batch("batch_1")
    assert (record.total, record.completed, record.failed, record.input_tokens, record.output_tokens) == (4, 2, 1, 4, 6)
    assert [line for line, _, _ in store.pending_lines("batch_1", after=-1, limit=10)] == [3]
    assert dict((n, r) for n, _, r in store.lines("batch_1"))[0] == '{"a":0}'


def test_pending_lines_close_except_those_in_flight(store):
    store.add_batch(_batch())
    store.start_lines("batch_1", "corridor-tiny", [(n, f"req-{n}", "{}") for n in range(3)], now=7)
    assert store.close_pending("batch_1", "batch_cancelled", "cancelled", keep=[1]) == 2
    assert store.pending_count("batch_1") == 1
    assert store.get_batch("batch_1").failed == 2


def test_result_files_hold_each_line_once_in_input_order_and_finishing_drops_the_lines(store):
    store.add_batch(_batch())
    store.start_lines("batch_1", "corridor-tiny", [(n, f"req-{n}", "{}") for n in range(3)], now=7)
    store.record_results([LineResult("batch_1", 2, '{"n":2}', True), LineResult("batch_1", 0, '{"n":0}', True),
                          LineResult("batch_1", 1, '{"n":1}', False)])
    store.add_replica("batch_1", "chat-fr-r1")
    store.add_replica("batch_1", "chat-fr-r1")
    assert store.replicas_of("batch_1") == {"chat-fr-r1"}
    size = store.write_results("batch_1", True, "file-out")
    assert store.write_results("batch_1", False, "file-err") > 0
    out = FileRecord("file-out", "fr-interior", "batch_batch_1_output.jsonl", "batch_output", size, 9)
    store.finish("batch_1", [out], status="completed", completed_at=9, output_file_id="file-out")
    with store.open_file("file-out") as handle:
        assert handle.read() == b'{"n":0}\n{"n":2}\n'
    assert size == len(b'{"n":0}\n{"n":2}\n')
    assert store.get_batch("batch_1").output_file_id == "file-out"
    assert list(store.lines("batch_1")) == [] and store.replicas_of("batch_1") == set()


def test_no_result_file_is_written_when_no_line_has_that_outcome(store):
    store.add_batch(_batch())
    store.start_lines("batch_1", "corridor-tiny", [(0, "req-0", "{}")], now=7)
    store.record_results([LineResult("batch_1", 0, '{"n":0}', True)])
    assert store.write_results("batch_1", False, "file-err") == 0
    with pytest.raises(FileNotFoundError):
        store.open_file("file-err")


def test_the_embedded_default_keeps_the_bytes_in_files_beside_the_database(tmp_path):
    store = open_batch_store(tmp_path)
    try:
        assert isinstance(store, BatchStore)
        _upload(store, tmp_path, "file-a", b"{}\n")
        assert store.local_path("file-a") == tmp_path / "files" / "file-a.jsonl"
        assert store.local_path("file-a").read_bytes() == b"{}\n"
    finally:
        store.close()
