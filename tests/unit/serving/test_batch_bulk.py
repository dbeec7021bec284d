"""Bulk submission of batch lines: grouped when they may be, split back exactly, alone otherwise."""

from __future__ import annotations

import doctest
import json

from serving.batch import BatchSettings, ExecutionSettings
from serving.batch import bulk as bulk_module

from batch_stack import CountingStub, batch_stack, chat_lines, results, upload, wait_for
from stub_upstream import ServerThread

FR_ONLY = {"chat-fr-r1": ("fr-paris", "corridor-tiny")}
WIDE = BatchSettings(execution=ExecutionSettings(bulk_lines=16))


def submit(client, content):
    return client.batches.create(input_file_id=upload(client, content), endpoint="/v1/chat/completions",
                                 completion_window="24h")


def test_the_modules_examples_hold() -> None:
    assert doctest.testmod(bulk_module).failed == 0


def test_lines_that_differ_only_in_messages_go_together_and_each_gets_its_own_answer(tmp_path):
    with batch_stack(tmp_path, replicas=FR_ONLY, settings=WIDE) as stack:
        client = stack.client()
        batch = wait_for(client, submit(client, chat_lines(40)).id)
        assert batch.status == "completed" and batch.request_counts.completed == 40
        stub = stack.stubs["chat-fr-r1"]
        assert stub.requests == 40 and stub.bulk_requests <= 8  # quota 8 in flight: groups of 8
        lines = results(client, batch)
        assert sorted(line["custom_id"] for line in lines) == sorted(f"req-{n}" for n in range(40))
        for line in lines:
            body = line["response"]["body"]
            assert len(body["choices"]) == 1 and body["choices"][0]["index"] == 0
            assert body["usage"] is None and body["corridor_usage"]["completion_tokens"] == 3
            assert "token_ids" not in body["choices"][0]
        assert len({line["response"]["request_id"] for line in lines}) == 40
        assert batch.usage.input_tokens == 40 * 3 and batch.usage.output_tokens == 40 * 3


def test_a_replica_without_the_bulk_endpoint_gets_every_line_alone(tmp_path):
    with batch_stack(tmp_path, replicas=FR_ONLY, settings=WIDE) as stack:
        stack.stubs["chat-fr-r1"].app = CountingStub("fr-paris", bulk=False).app
        client = stack.client()
        batch = wait_for(client, submit(client, chat_lines(12)).id)
        assert batch.status == "completed" and batch.request_counts.completed == 12
        for line in results(client, batch):
            assert line["response"]["body"]["usage"]["prompt_tokens"] == 3  # the per-line answer


def test_lines_with_other_parameters_or_streaming_are_not_grouped_with_the_rest(tmp_path):
    lines = [json.dumps({"custom_id": f"a{n}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": "corridor-tiny", "max_tokens": 5 + (n % 2),
                                  "messages": [{"role": "user", "content": f"q{n}"}]}})
             for n in range(6)]
    with batch_stack(tmp_path, replicas=FR_ONLY, settings=WIDE) as stack:
        client = stack.client()
        batch = wait_for(client, submit(client, ("\n".join(lines) + "\n").encode()).id)
        assert batch.request_counts.completed == 6
        assert stack.stubs["chat-fr-r1"].bulk_requests == 0  # alternating max_tokens: no two alike
    assert bulk_module.group_key(json.dumps({"model": "m", "stream": True, "messages": []})) is None
    assert bulk_module.group_key(json.dumps({"model": "m", "n": 2, "messages": []})) is None


def test_a_bulk_answer_that_does_not_match_its_lines_sends_them_alone(tmp_path):
    class Short(CountingStub):
        async def __call__(self, scope, receive, send) -> None:
            if scope["type"] == "http" and scope["path"] == "/v1/chat/completions/batch":
                await send({"type": "http.response.start", "status": 400,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": b'{"error": {"message": "bad"}}'})
                return
            await super().__call__(scope, receive, send)

    with batch_stack(tmp_path, replicas=FR_ONLY, settings=WIDE) as stack:
        stack.stubs["chat-fr-r1"].app = Short("fr-paris").app
        server = ServerThread(Short("fr-paris")).__enter__()
        stack.endpoints.items[0] = stack.endpoints.items[0].__class__(
            *[getattr(stack.endpoints.items[0], f) for f in ("replica_id", "model", "pool",
                                                             "jurisdiction", "node_id")], server.url)
        client = stack.client()
        batch = wait_for(client, submit(client, chat_lines(10)).id)
        assert batch.status == "completed" and batch.request_counts.completed == 10
        server.__exit__()
