"""The Batch API with its store in PostgreSQL, through two gateways sharing one database as two
gateway processes of a site do: a file uploaded through one is read through the other, a batch
created on one is seen, finished and downloaded on the other, each line answered once.
(``postgres`` marker: uses ``postgres_url``.)"""

from __future__ import annotations

import io
import json
import time
from collections import Counter

from batch_stack import batch_stack, chat_lines, results, upload, wait_for


def test_two_gateways_on_one_database_share_files_and_batches(tmp_path, postgres_url):
    with batch_stack(tmp_path / "a", database=postgres_url) as first, \
            batch_stack(tmp_path / "b", database=postgres_url) as second:
        on_first = first.client()
        on_second = second.client()
        content = chat_lines(25)
        file_id = upload(on_first, content)
        assert on_second.files.retrieve(file_id).bytes == len(content)
        assert on_second.files.content(file_id).content == content
        batch = on_first.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                        completion_window="24h")
        done = wait_for(on_second, batch.id)
        assert done.status == "completed", done
        assert (done.request_counts.completed, done.request_counts.failed) == (25, 0)
        lines = results(on_second, done)
        assert sorted(line["custom_id"] for line in lines) == sorted(f"req-{n}" for n in range(25))
        assert sum(stub.requests for stub in first.stubs.values()) == 25, "each line ran once"
        assert on_second.batches.retrieve(batch.id).output_file_id == done.output_file_id
        assert not (tmp_path / "a" / "state" / "files").exists(), "no bytes on the gateway's disk"


def test_a_large_upload_goes_through_in_pieces_and_reads_back_whole(tmp_path, postgres_url):
    with batch_stack(tmp_path, database=postgres_url) as stack:
        client = stack.client()
        body = {"model": "corridor-tiny", "messages": [{"role": "user", "content": "x" * 2000}]}
        line = json.dumps({"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": body})
        content = ("\n".join(line.replace('"c"', f'"c{n}"') for n in range(1500)) + "\n").encode()
        assert len(content) > 2 * 1024 * 1024
        created = client.files.create(file=("big.jsonl", io.BytesIO(content)), purpose="batch")
        response = client.files.with_raw_response.content(created.id)
        assert response.headers["content-length"] == str(len(content))
        assert response.content == content


def test_a_new_service_on_the_same_database_finishes_a_batch_exactly_once(tmp_path, postgres_url):
    fr_only = {"chat-fr-r1": ("fr-paris", "corridor-tiny")}
    with batch_stack(tmp_path / "a", replicas=fr_only, delay=0.1, database=postgres_url) as first:
        client = first.client()
        file_id = upload(client, chat_lines(60))
        batch = client.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        deadline = time.monotonic() + 30
        while client.batches.retrieve(batch.id).request_counts.completed < 16:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    with batch_stack(tmp_path / "b", replicas=fr_only, database=postgres_url) as second:
        client = second.client()
        done = wait_for(client, batch.id)
        assert done.status == "completed" and done.request_counts.completed == 60
        lines = results(client, done)
        assert Counter(line["custom_id"] for line in lines) == Counter(f"req-{n}" for n in range(60))
