"""Validating batch input files: every line good, or the batch fails with per-line errors."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import yaml

from policies import Policy, Workload, default_bundle_path
from serving.batch.validation import InputLimits, validate_input

from batch_stack import batch_stack, chat_lines, upload, wait_for


def line(custom_id="a", url="/v1/chat/completions", method="POST", **body) -> bytes:
    body = {"model": "corridor-tiny", "messages": [{"role": "user", "content": "x"}], **body}
    return json.dumps({"custom_id": custom_id, "method": method, "url": url, "body": body}).encode()


@pytest.fixture(scope="module")
def narrow_policy(tmp_path_factory):
    """The default bundle, except that fr-health may not use minilm."""
    bundle = yaml.safe_load(default_bundle_path().read_text("utf-8"))
    for tenant in bundle["tenants"]:
        if tenant["id"] == "fr-health":
            tenant["models"] = ["corridor-tiny"]
    path = tmp_path_factory.mktemp("bundle") / "narrow.yaml"
    path.write_text(yaml.safe_dump(bundle, allow_unicode=True), "utf-8")
    return Policy.load(path)


def check(policy, lines, *, endpoint="/v1/chat/completions", tenant="fr-interior", marking="DR",
          limits=InputLimits()):
    workload = Workload.create(tenant, marking, kind="batch")
    return validate_input(lines, endpoint=endpoint, workload=workload, policy=policy,
                          evaluate=lambda w: policy.decide_all(w, at=dt.datetime.now(dt.UTC)),
                          limits=limits)


CASES = [
    ("a line that is not JSON is reported with its line number",
     [line("a"), b"{not json"], "invalid_json_line", 2),
    ("a line that is a JSON list is not a request", [b"[1, 2]"], "invalid_json_line", 1),
    ("a custom_id used twice is reported at its second use",
     [line("a"), line("b"), line("a")], "duplicate_custom_id", 3),
    ("a missing custom_id is reported", [json.dumps({"method": "POST", "url": "/v1/chat/completions",
                                                     "body": {"model": "corridor-tiny", "messages": []}}).encode()],
     "invalid_custom_id", 1),
    ("a url other than the batch's endpoint is reported", [line("a", url="/v1/completions")],
     "mismatched_endpoint", 1),
    ("a method other than POST is reported", [line("a", method="GET")], "invalid_method", 1),
    ("an unknown field of a line is reported, not ignored",
     [json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {},
                  "priority": 1}).encode()], "unknown_parameter", 1),
    ("a body without messages is reported for chat",
     [json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                  "body": {"model": "corridor-tiny"}}).encode()], "missing_required_parameter", 1),
    ("a streaming request cannot be batched", [line("a", stream=True)], "stream_not_supported", 1),
    ("a model the bundle does not know is reported", [line("a", model="gpt-4o")], "model_not_found", 1),
    ("an embedding model cannot serve chat", [line("a", model="minilm")], "model_endpoint_mismatch", 1),
    ("a second model in one batch is reported",
     [line("a"), line("b", model="minilm")], "mismatched_model", 2),
    ("an empty file is an error", [b"\n", b"  \n"], "empty_file", None),
]


@pytest.mark.parametrize("lines, code, number", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation(default_policy, lines, code, number):
    result = check(default_policy, lines)
    assert not result.ok and result.lines == []
    assert (result.errors[0].code, result.errors[0].line) == (code, number), result.errors


def test_good_lines_are_kept_with_their_line_numbers_and_blank_lines_skipped(default_policy):
    result = check(default_policy, [line("a"), b"\n", line("b", max_tokens=4)])
    assert result.ok and result.model == "corridor-tiny"
    assert [(n, c) for n, c, _ in result.lines] == [(1, "a"), (3, "b")]
    assert json.loads(result.lines[1][2])["max_tokens"] == 4


def test_a_model_the_tenant_may_not_use_fails_with_the_rulebook_reason(narrow_policy):
    inputs = [json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
                          "body": {"model": "minilm", "input": "x"}}).encode()]
    result = check(narrow_policy, inputs, endpoint="/v1/embeddings", tenant="fr-health", marking="PUBLIC")
    assert result.errors[0].code == "model_not_allowed"
    assert "MODEL_NOT_ALLOWED (model-allowed)" in result.errors[0].message
    assert result.refusal is not None and not result.refusal.allowed


def test_limits_on_lines_and_line_size(default_policy):
    many = check(default_policy, [line(str(n)) for n in range(4)], limits=InputLimits(max_lines=3))
    assert [e.code for e in many.errors] == ["too_many_lines"]
    big = check(default_policy, [line("a", user="x" * 200)], limits=InputLimits(max_line_bytes=100))
    assert [e.code for e in big.errors] == ["line_too_large"]


def test_at_most_max_errors_are_listed_then_a_count(default_policy):
    result = check(default_policy, [b"nope"] * 5, limits=InputLimits(max_errors=2))
    assert [e.code for e in result.errors] == ["invalid_json_line"] * 2 + ["too_many_errors"]
    assert result.errors[-1].message == "3 more errors not listed"


def test_an_invalid_batch_fails_whole_and_nothing_reaches_a_replica(tmp_path, narrow_policy):
    with batch_stack(tmp_path, policy=narrow_policy) as stack:
        client = stack.client("fr-health/admin")
        content = chat_lines(3) + b"{broken\n" + chat_lines(1, prefix="req")
        batch = wait_for(client, client.batches.create(
            input_file_id=upload(client, content), endpoint="/v1/chat/completions",
            completion_window="24h").id)
        assert batch.status == "failed" and batch.failed_at is not None
        assert [(e.code, e.line) for e in batch.errors.data] == [("invalid_json_line", 4),
                                                                 ("duplicate_custom_id", 5)]
        assert batch.output_file_id is None and batch.error_file_id is None
        inputs = json.dumps({"custom_id": "e", "method": "POST", "url": "/v1/embeddings",
                             "body": {"model": "minilm", "input": "x"}}).encode()
        batch = wait_for(client, client.batches.create(
            input_file_id=upload(client, inputs), endpoint="/v1/embeddings", completion_window="24h").id)
        assert batch.status == "failed" and batch.errors.data[0].code == "model_not_allowed"
        assert sum(stub.requests for stub in stack.stubs.values()) == 0
        refusal = [e for e in stack.batch_entries(batch.id) if e["allowed"] is False]
        assert refusal and "MODEL_NOT_ALLOWED" in refusal[0]["reasons"]
        assert refusal[0]["detail"]["action"] == "validate"


def test_a_batch_line_carrying_a_banner_above_the_batch_marking_fails_validation(default_policy):
    from policies import Workload
    from serving.batch.validation import validate_input

    lines = [json.dumps({"custom_id": f"c{n}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": "corridor-tiny",
                                  "messages": [{"role": "user", "content": text}]}}).encode()
             for n, text in enumerate(["Bonjour", "DIFFUSION RESTREINTE\nNote au préfet"])]
    workload = Workload.create("fr-interior", "PUBLIC", kind="batch")
    result = validate_input(lines, endpoint="/v1/chat/completions", workload=workload, policy=default_policy,
                            evaluate=lambda w: default_policy.decide_all(w))
    assert [(e.code, e.line) for e in result.errors] == [("marking_spillage", 2)]
    assert "MARKING_SPILLAGE" in result.errors[0].message and "préfet" not in result.errors[0].message
