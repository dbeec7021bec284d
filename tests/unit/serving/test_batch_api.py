"""The Files and Batch API with the official openai SDK, against stub upstreams (no Ray, no vLLM)."""

from __future__ import annotations

import io
import json
from collections import Counter

import openai
import pytest

from batch_stack import batch_stack, chat_lines, results, upload, wait_for


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stack(tmp_path_factory, request):
    """The stack with its batch store in SQLite (the embedded default), then in PostgreSQL."""
    database = (request.getfixturevalue("postgres_server").create_database("batch_api")
                if request.param == "postgres" else None)
    replicas = {"chat-fr-r1": ("fr-paris", "corridor-tiny"), "chat-fr-r2": ("fr-paris", "corridor-tiny"),
                "chat-de-r1": ("de-frankfurt", "corridor-tiny"), "embed-r1": ("fr-paris", "minilm")}
    with batch_stack(tmp_path_factory.mktemp("home"), replicas=replicas, database=database) as stack:
        yield stack


def test_a_file_round_trips_through_create_list_retrieve_content_and_delete(stack):
    client = stack.client()
    content = chat_lines(3)
    created = client.files.create(file=("cases.jsonl", io.BytesIO(content)), purpose="batch")
    assert (created.object, created.purpose, created.bytes, created.filename) == (
        "file", "batch", len(content), "cases.jsonl")
    assert client.files.retrieve(created.id).id == created.id
    assert created.id in [f.id for f in client.files.list()]
    assert client.files.content(created.id).content == content
    deleted = client.files.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)


def test_a_file_with_another_purpose_is_refused(stack):
    with pytest.raises(openai.BadRequestError) as info:
        stack.client().files.create(file=("x.jsonl", io.BytesIO(b"{}\n")), purpose="fine-tune")
    assert info.value.body["code"] == "invalid_purpose"


def test_an_app_key_may_not_use_the_batch_api(stack):
    with pytest.raises(openai.PermissionDeniedError) as info:
        stack.client("fr-interior/app").files.list()
    assert info.value.body["code"] == "wrong_role"


def test_a_dr_chat_batch_of_fr_interior_completes_in_paris_with_every_line_once(stack):
    client = stack.client(**{"X-Corridor-Marking": "DR"})
    batch = client.batches.create(input_file_id=upload(client, chat_lines(40)),
                                  endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"case": "préfecture"})
    assert batch.status == "validating" and batch.metadata == {"case": "préfecture"}
    batch = wait_for(client, batch.id)
    assert batch.status == "completed", batch
    assert batch.request_counts.model_dump() == {"total": 40, "completed": 40, "failed": 0}
    assert batch.error_file_id is None and batch.model == "corridor-tiny"
    assert batch.usage.output_tokens == 40 * 3 and batch.usage.input_tokens == 40 * 3
    assert batch.completed_at >= batch.in_progress_at >= batch.created_at
    assert batch.model_extra["corridor"]["marking"] == "DR"
    lines = results(client, batch)
    assert Counter(line["custom_id"] for line in lines) == Counter(f"req-{n}" for n in range(40))
    for line in lines:
        assert line["error"] is None and line["id"].startswith("batch_req_")
        assert line["response"]["status_code"] == 200
        assert line["response"]["body"]["system_fingerprint"] == "fr-paris"
        assert line["response"]["request_id"].startswith("chatcmpl-stub")
    output = client.files.retrieve(batch.output_file_id)
    assert output.purpose == "batch_output" and output.filename == f"batch_{batch.id}_output.jsonl"
    entries = stack.batch_entries(batch.id)
    assert sorted(e["detail"]["replica"] for e in entries) == ["chat-fr-r1", "chat-fr-r2"]
    for entry in entries:
        assert (entry["kind"], entry["allowed"], entry["pool"], entry["jurisdiction"]) == (
            "placement", True, "fr-paris", "FR")
        assert entry["workload"]["kind"] == "batch" and entry["workload"]["marking"] == "DR"
        assert entry["decision_id"].startswith("dec_") and entry["tenant"] == "fr-interior"
    assert "dossier" not in json.dumps(entries)


def test_completions_and_embeddings_batches_run_on_their_endpoints(stack):
    client = stack.client("eu-agency/admin")
    prompts = [json.dumps({"custom_id": f"c{n}", "method": "POST", "url": "/v1/completions",
                           "body": {"model": "corridor-tiny", "prompt": "x"}}) for n in range(3)]
    batch = client.batches.create(input_file_id=upload(client, "\n".join(prompts).encode()),
                                  endpoint="/v1/completions", completion_window="24h")
    batch = wait_for(client, batch.id)
    assert batch.status == "completed", batch
    assert {line["response"]["body"]["object"] for line in results(client, batch)} == {"text_completion"}
    inputs = [json.dumps({"custom_id": f"e{n}", "method": "POST", "url": "/v1/embeddings",
                          "body": {"model": "minilm", "input": "x"}}) for n in range(3)]
    batch = client.batches.create(input_file_id=upload(client, "\n".join(inputs).encode()),
                                  endpoint="/v1/embeddings", completion_window="24h")
    batch = wait_for(client, batch.id)
    assert batch.status == "completed", batch
    assert [line["response"]["body"]["data"][0]["embedding"] for line in results(client, batch)] == [
        [0.25, -0.5, 0.125]] * 3


def test_the_marking_can_come_from_the_metadata(stack):
    client = stack.client("fr-interior/admin")
    batch = client.batches.create(input_file_id=upload(client, chat_lines(2)),
                                  endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"corridor_marking": "PUBLIC"})
    assert batch.model_extra["corridor"]["marking"] == "PUBLIC"
    assert wait_for(client, batch.id).status == "completed"


def test_a_marking_in_header_and_metadata_that_disagree_is_refused(stack):
    client = stack.client(**{"X-Corridor-Marking": "DR"})
    with pytest.raises(openai.BadRequestError) as info:
        client.batches.create(input_file_id=upload(client, chat_lines(1)),
                              endpoint="/v1/chat/completions", completion_window="24h",
                              metadata={"corridor_marking": "PUBLIC"})
    assert info.value.body["code"] == "conflicting_parameters"


def test_a_secret_batch_is_refused_by_name_and_the_refusal_is_in_the_ledger(stack):
    client = stack.client(**{"X-Corridor-Marking": "SECRET"})
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.batches.create(input_file_id=upload(client, chat_lines(1)),
                              endpoint="/v1/chat/completions", completion_window="24h")
    assert "CLASSIFIED_NEVER (classified-never)" in info.value.body["message"]
    refusals = [i["entry"] for i in stack.ledger.entries(kind="placement", limit=1000)["data"]
                if i["entry"]["detail"].get("action") == "create"]
    assert refusals and refusals[-1]["allowed"] is False
    assert "CLASSIFIED_NEVER" in refusals[-1]["reasons"] and refusals[-1]["workload"]["kind"] == "batch"


@pytest.mark.parametrize("change, code", [
    ({"endpoint": "/v1/responses"}, "invalid_endpoint"),
    ({"completion_window": "tomorrow"}, "invalid_completion_window"),
    ({"completion_window": "200h"}, "invalid_completion_window"),
    ({"input_file_id": "file-unknown"}, "file_not_found"),
    ({"metadata": {"k": "v" * 513}}, "invalid_metadata"),
])
def test_a_bad_batch_request_is_refused_naming_the_parameter(stack, change, code):
    client = stack.client()
    params = {"input_file_id": upload(client, chat_lines(1)), "endpoint": "/v1/chat/completions",
              "completion_window": "24h", **change}
    with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as info:
        client.batches.create(**params)
    assert info.value.body["code"] == code


def test_an_unknown_batch_parameter_is_refused_not_ignored(stack):
    client = stack.client()
    with pytest.raises(openai.BadRequestError) as info:
        client.batches.create(input_file_id=upload(client, chat_lines(1)), endpoint="/v1/chat/completions",
                              completion_window="24h", extra_body={"completion_windw": "1h"})
    assert info.value.body["param"] == "completion_windw"


def test_a_tenant_sees_neither_the_files_nor_the_batches_of_another(stack):
    fr = stack.client()
    file_id = upload(fr, chat_lines(2))
    batch = fr.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                              completion_window="24h")
    de = stack.client("de-federal-it/admin")
    for call in (lambda: de.files.retrieve(file_id), lambda: de.files.content(file_id),
                 lambda: de.files.delete(file_id), lambda: de.batches.retrieve(batch.id),
                 lambda: de.batches.cancel(batch.id),
                 lambda: de.batches.create(input_file_id=file_id, endpoint="/v1/chat/completions",
                                           completion_window="24h")):
        with pytest.raises(openai.NotFoundError):
            call()
    assert file_id not in [f.id for f in de.files.list()]
    assert batch.id not in [b.id for b in de.batches.list()]
    assert fr.files.retrieve(file_id).id == file_id


def test_batches_list_newest_first_in_pages(stack):
    client = stack.client("de-health/admin")
    ids = [client.batches.create(input_file_id=upload(client, chat_lines(1)),
                                 endpoint="/v1/chat/completions", completion_window="24h").id
           for _ in range(3)]
    first = client.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[::-1][:2] and first.has_more is True
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # auto-paging with `after`
    for batch_id in ids:
        wait_for(client, batch_id)


def test_cancelling_a_completed_batch_is_a_conflict(stack):
    client = stack.client()
    batch = client.batches.create(input_file_id=upload(client, chat_lines(1)),
                                  endpoint="/v1/chat/completions", completion_window="24h")
    wait_for(client, batch.id)
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)
