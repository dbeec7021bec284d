"""Executing batches: cancel, expiry, fair shares, interactive priority, batch replicas, failover."""

from __future__ import annotations

import socket
import time
from collections import Counter

from serving.batch import BatchSettings, ExecutionSettings

from batch_stack import CountingStub, batch_stack, chat_lines, endpoint, results, upload, wait_for
from stub_provisioner import StubProvisioner

FR_ONLY = {"chat-fr-r1": ("fr-paris", "corridor-tiny")}


def submit(client, content, window="24h"):
    return client.batches.create(input_file_id=upload(client, content), endpoint="/v1/chat/completions",
                                 completion_window=window)


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def assert_every_line_once(lines, count, prefix="req"):
    assert Counter(line["custom_id"] for line in lines) == Counter(f"{prefix}-{n}" for n in range(count))


def test_cancel_stops_new_lines_finishes_those_in_flight_and_reports_every_line_once(tmp_path):
    with batch_stack(tmp_path, replicas=FR_ONLY, delay=0.1) as stack:
        client = stack.client()
        batch = submit(client, chat_lines(100))
        wait_until(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 8)
        cancelled = client.batches.cancel(batch.id)
        assert cancelled.status == "cancelling" and cancelled.cancelling_at is not None
        batch = wait_for(client, batch.id)
        assert batch.status == "cancelled" and batch.cancelled_at is not None
        counts = batch.request_counts
        assert counts.total == 100 and counts.completed + counts.failed == 100 and counts.failed > 0
        lines = results(client, batch)
        assert_every_line_once(lines, 100)
        errors = [line["error"]["code"] for line in lines if line["error"]]
        assert set(errors) == {"batch_cancelled"} and len(errors) == counts.failed
        assert stack.stubs["chat-fr-r1"].requests == counts.completed  # nothing started after cancel


def test_expiry_marks_the_unfinished_lines_expired(tmp_path):
    with batch_stack(tmp_path, replicas=FR_ONLY, delay=0.2) as stack:
        client = stack.client()
        batch = wait_for(client, submit(client, chat_lines(120), window="2s").id)
        assert batch.status == "expired" and batch.expired_at is not None
        counts = batch.request_counts
        assert 0 < counts.completed < 120 and counts.completed + counts.failed == 120
        lines = results(client, batch)
        assert_every_line_once(lines, 120)
        assert {line["error"]["code"] for line in lines if line["error"]} == {"batch_expired"}


def test_tenants_share_batch_capacity_fairly_within_their_quotas(tmp_path):
    settings = BatchSettings(execution=ExecutionSettings(replica_batch_slots=6))
    with batch_stack(tmp_path, replicas=FR_ONLY, delay=0.05, settings=settings) as stack:
        big = submit(stack.client(), chat_lines(80, user="fr-interior"))
        wait_until(lambda: stack.stubs["chat-fr-r1"].requests >= 6)
        eu = stack.client("eu-agency/admin")
        small = wait_for(eu, submit(eu, chat_lines(12, user="eu-agency")).id)
        assert small.status == "completed"
        assert stack.client().batches.retrieve(big.id).status == "in_progress"
        stub = stack.stubs["chat-fr-r1"]
        assert stub.max_inflight <= 6  # the replica's batch slots
        assert stub.max_by_user["fr-interior"] <= 8  # its bundle quota
        assert 3 <= stub.max_by_user["eu-agency"] <= 4  # a fair half of the slots, within its quota of 4
        assert wait_for(stack.client(), big.id).status == "completed"


def test_interactive_traffic_keeps_priority_over_batch_lines(tmp_path):
    settings = BatchSettings(execution=ExecutionSettings(replica_slots=4, replica_batch_slots=4))
    with batch_stack(tmp_path, replicas=FR_ONLY, settings=settings) as stack:
        router = stack.gateway.router
        replica = stack.endpoints.items[0]
        for _ in range(4):  # four interactive requests in flight on the only replica
            router.acquire(replica)
        client = stack.client()
        batch = submit(client, chat_lines(5))
        time.sleep(0.5)
        assert client.batches.retrieve(batch.id).status == "in_progress"
        assert stack.stubs["chat-fr-r1"].requests == 0
        for _ in range(4):
            router.release(replica)
        assert wait_for(client, batch.id).status == "completed"


def batch_provisioner(ref: dict, pool: str) -> StubProvisioner:
    """Places a batch replica as a counting stub upstream in ``pool``."""
    return StubProvisioner(ref, pool, prefix="batch", app=CountingStub)


def test_a_batch_replica_is_placed_when_no_allowed_replica_is_live_and_released_when_idle(tmp_path):
    ref: dict = {}
    provisioner = batch_provisioner(ref, "de-frankfurt")
    settings = BatchSettings(execution=ExecutionSettings(provision_idle_s=0.3, poll_interval_s=0.05))
    with batch_stack(tmp_path, replicas=FR_ONLY, settings=settings, provisioner=provisioner) as stack:
        ref["stack"] = stack
        client = stack.client("de-federal-it/admin", **{"X-Corridor-Marking": "VS-NfD"})
        batch = wait_for(client, submit(client, chat_lines(10)).id)
        assert batch.status == "completed" and provisioner.placed == ["batch-1"]
        assert {line["response"]["body"]["system_fingerprint"] for line in results(client, batch)} == {
            "de-frankfurt"}
        entries = stack.batch_entries(batch.id)
        assert [(e["pool"], e["detail"]["replica"]) for e in entries] == [("de-frankfurt", "batch-1-r1")]
        wait_until(lambda: provisioner.released == ["batch-1"])


def test_a_batch_waits_and_says_why_when_no_batch_replica_can_be_placed(tmp_path):
    ref: dict = {}
    provisioner = batch_provisioner(ref, "de-frankfurt")
    provisioner.refuse = True
    settings = BatchSettings(execution=ExecutionSettings(poll_interval_s=0.05))
    with batch_stack(tmp_path, replicas=FR_ONLY, provisioner=provisioner, settings=settings) as stack:
        ref["stack"] = stack
        client = stack.client("de-federal-it/admin")
        batch = submit(client, chat_lines(3))
        wait_until(lambda: (client.batches.retrieve(batch.id).model_extra["corridor"].get("waiting") or "")
                   .startswith("no batch replica could be placed"))
        client.batches.cancel(batch.id)
        batch = wait_for(client, batch.id)
        assert batch.status == "cancelled" and batch.request_counts.failed == 3


def test_lines_move_to_another_replica_when_one_does_not_answer(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with batch_stack(tmp_path, replicas=FR_ONLY) as stack:
        stack.endpoints.items.insert(0, endpoint("fr-paris", dead, replica="chat-fr-dead"))
        client = stack.client()
        batch = wait_for(client, submit(client, chat_lines(20)).id)
        assert batch.status == "completed" and batch.request_counts.completed == 20
        assert_every_line_once(results(client, batch), 20)


def test_a_replica_that_keeps_failing_puts_its_answers_in_the_error_file(tmp_path):
    with batch_stack(tmp_path, replicas=FR_ONLY) as stack:
        stack.stubs["chat-fr-r1"].app = CountingStub("fr-paris", fail=True).app
        client = stack.client()
        batch = wait_for(client, submit(client, chat_lines(4)).id)
        assert batch.status == "completed" and batch.request_counts.failed == 4
        assert batch.output_file_id is None
        lines = results(client, batch)
        assert {line["response"]["status_code"] for line in lines} == {500}
        assert stack.stubs["chat-fr-r1"].requests == 4 * 3  # three attempts each


def test_a_new_service_on_the_same_state_finishes_a_batch_exactly_once(tmp_path):
    with batch_stack(tmp_path, replicas=FR_ONLY, delay=0.1) as first:
        client = first.client()
        batch = submit(client, chat_lines(60))
        wait_until(lambda: client.batches.retrieve(batch.id).request_counts.completed >= 16)
    sent_before = first.stubs["chat-fr-r1"].requests
    with batch_stack(tmp_path, replicas=FR_ONLY) as second:
        client = second.client()
        done = wait_for(client, batch.id)
        assert done.status == "completed" and done.request_counts.completed == 60
        assert_every_line_once(results(client, done), 60)
        assert sent_before + second.stubs["chat-fr-r1"].requests >= 60
        entries = second.batch_entries(batch.id)
        assert len(entries) == 1  # the same replica (id and node): its use is in the ledger once


def test_answers_holding_unicode_line_separators_stay_one_output_line_each(tmp_path):
    with batch_stack(tmp_path, replicas=FR_ONLY) as stack:
        stack.stubs["chat-fr-r1"].app = CountingStub("fr\u2028paris\x85").app
        client = stack.client()
        batch = wait_for(client, submit(client, chat_lines(5)).id)
        text = client.files.content(batch.output_file_id).text
        assert len(text.splitlines()) == 5
        assert {line["response"]["body"]["system_fingerprint"] for line in results(client, batch)} == {
            "fr\u2028paris\x85"}
