"""Exactly once across processes: two batch stores on one database answering the same lines at
the same moment (as two gateway processes resuming one batch would) count each line once."""

from __future__ import annotations

import threading

from serving.batch.pg_store import PgBatchStore
from serving.batch.records import BatchRecord, LineResult


def test_two_stores_racing_on_the_same_lines_record_each_once(postgres_url):
    stores = [PgBatchStore(postgres_url), PgBatchStore(postgres_url)]
    try:
        stores[0].add_batch(BatchRecord(id="batch_1", tenant="fr-interior", input_file_id="file-in",
                                        endpoint="/v1/chat/completions", completion_window="24h",
                                        marking="PUBLIC", data_flags=(), created_at=1, expires_at=2))
        stores[0].start_lines("batch_1", "corridor-tiny", [(n, f"req-{n}", "{}") for n in range(200)], now=1)
        written = [0, 0]
        go = threading.Barrier(2)

        def answer(which: int) -> None:
            go.wait()
            for start in range(0, 200, 10):
                written[which] += stores[which].record_results(
                    [LineResult("batch_1", n, f'{{"by":{which},"n":{n}}}', True, 1, 2)
                     for n in range(start, start + 10)])

        threads = [threading.Thread(target=answer, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        record = stores[1].get_batch("batch_1")
        assert sum(written) == 200
        assert (record.completed, record.input_tokens, record.output_tokens) == (200, 200, 400)
        assert stores[1].pending_count("batch_1") == 0
    finally:
        for store in stores:
            store.close()


def test_a_batch_finished_by_one_process_is_not_finished_again_by_another(postgres_url):
    from serving.batch.records import FileRecord

    first, second = PgBatchStore(postgres_url), PgBatchStore(postgres_url)
    try:
        first.add_batch(BatchRecord(id="batch_1", tenant="fr-interior", input_file_id="file-in",
                                    endpoint="/v1/chat/completions", completion_window="24h",
                                    marking="PUBLIC", data_flags=(), created_at=1, expires_at=2))
        first.start_lines("batch_1", "corridor-tiny", [(0, "req-0", "{}")], now=1)
        first.record_results([LineResult("batch_1", 0, '{"n":0}', True)])
        sizes = [store.write_results("batch_1", True, f"file-{n}") for n, store in enumerate((first, second))]
        for n, store in enumerate((first, second)):
            store.finish("batch_1", [FileRecord(f"file-{n}", "fr-interior", "out.jsonl", "batch_output",
                                                sizes[n], 3)], status="completed", completed_at=3,
                         output_file_id=f"file-{n}")
        assert second.get_batch("batch_1").output_file_id == "file-0", "the first finish stands"
        assert second.get_file("file-1", "fr-interior") is None
    finally:
        first.close()
        second.close()
