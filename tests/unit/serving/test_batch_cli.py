"""``corridor batch``: submit with a progress bar and download, list, status, cancel, download."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from serving.cli import app

from batch_stack import batch_stack, chat_lines, upload, wait_for

runner = CliRunner()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with batch_stack(tmp_path_factory.mktemp("home"), delay=0.02) as stack:
        yield stack


def corridor(stack, *args, who="fr-interior/admin"):
    return runner.invoke(app, ["batch", *args, "--url", stack.url, "--key", stack.keys[who]])


def test_submit_wait_follows_the_batch_and_downloads_every_result(stack, tmp_path):
    source = tmp_path / "cases.jsonl"
    source.write_bytes(chat_lines(30))
    output = tmp_path / "out.jsonl"
    result = corridor(stack, "submit", str(source), "--endpoint", "/v1/chat/completions", "--marking", "DR",
                      "--metadata", "case=4711", "--wait", "--interval", "0.05", "--output", str(output))
    assert result.exit_code == 0, result.output
    assert "marking DR" in result.output and "30 completed, 0 failed of 30" in result.output
    assert "lines/s" in result.output and "30/30" in result.output  # the progress bar
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert Counter(line["custom_id"] for line in lines) == Counter(f"req-{n}" for n in range(30))
    batch_id = result.output.split()[1]
    assert stack.client().batches.retrieve(batch_id).metadata == {"case": "4711"}


def test_list_status_cancel_and_download(stack, tmp_path):
    client = stack.client()
    batch = client.batches.create(input_file_id=upload(client, chat_lines(400)),
                                  endpoint="/v1/chat/completions", completion_window="24h")
    listed = corridor(stack, "list")
    assert listed.exit_code == 0 and batch.id in listed.output
    status = corridor(stack, "status", batch.id)
    assert status.exit_code == 0 and batch.id in status.output
    early = corridor(stack, "download", batch.id)
    assert early.exit_code == 1 and "its files exist once it ends" in early.output
    cancelled = corridor(stack, "cancel", batch.id)
    assert cancelled.exit_code == 0 and ("cancelling" in cancelled.output or "cancelled" in cancelled.output)
    assert wait_for(client, batch.id).status == "cancelled"
    errors = tmp_path / "errors.jsonl"
    done = corridor(stack, "download", batch.id, "--errors", str(errors),
                    "--output", str(tmp_path / "out.jsonl"))
    assert done.exit_code == 0, done.output
    assert {json.loads(line)["error"]["code"] for line in errors.read_text().splitlines()} == {"batch_cancelled"}


def test_a_refusal_is_shown_with_the_gateway_message_and_exit_1(stack, tmp_path):
    source = tmp_path / "cases.jsonl"
    source.write_bytes(chat_lines(1))
    result = corridor(stack, "submit", str(source), "--marking", "SECRET")
    assert result.exit_code == 1 and "CLASSIFIED_NEVER" in result.output


def test_the_demo_key_of_a_tenant_is_read_from_the_home(stack, tmp_path, monkeypatch):
    (tmp_path / "demo-keys.json").write_text(json.dumps({"fr-interior/admin": stack.keys["fr-interior/admin"]}))
    monkeypatch.delenv("CORRIDOR_API_KEY", raising=False)
    result = runner.invoke(app, ["batch", "list", "--url", stack.url, "--tenant", "fr-interior",
                                 "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    missing = runner.invoke(app, ["batch", "list", "--url", stack.url])
    assert missing.exit_code == 2 and "no admin key" in missing.output
