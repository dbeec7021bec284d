"""The security feed: each event type as an OCSF-style record with the right fields, in the file
and over syslog (RFC 5424, UDP and TCP), with the ledger index wherever the event is an entry."""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import threading

import pytest
import yaml
from typer.testing import CliRunner

from policies import Policy, default_bundle_path, load_bundle
from scheduler.inventory import Inventory, RayNode, build_snapshot
from scheduler.ledger import Ledger, LedgerEntryDraft
from serving.cli import audit
from serving.feed import LedgerFollower, SecurityFeed, SyslogSink, rfc5424
from serving.feed.ocsf import ocsf_record

from defence_stack import defence_stack

COMMON = {"class_uid", "class_name", "category_uid", "category_name", "activity_id", "activity_name",
          "type_uid", "severity_id", "severity", "time", "time_dt", "status_id", "status", "message",
          "actor", "resources", "metadata", "unmapped"}


def check_common(record, class_uid, event_code):
    assert COMMON <= set(record), COMMON - set(record)
    assert record["class_uid"] == class_uid
    assert record["type_uid"] == class_uid * 100 + record["activity_id"]
    assert record["metadata"]["event_code"] == event_code
    assert record["metadata"]["version"] == "1.1.0" and record["metadata"]["product"]["name"] == "Corridor"
    assert isinstance(record["time"], int) and record["time_dt"].endswith("Z")
    assert 1 <= record["severity_id"] <= 6 and record["message"] and record["resources"]


def only(records, event_code):
    found = [r for r in records if r["metadata"]["event_code"] == event_code]
    assert len(found) == 1, [r["metadata"]["event_code"] for r in records]
    return found[0]


@pytest.fixture
def stack(tmp_path):
    with defence_stack(tmp_path, pools=("fr-paris",)) as stack:
        yield stack


def test_a_burst_of_failed_logins_is_throttled_reported_once_and_in_the_ledger(stack):
    bad = {"authorization": "Bearer cor_000000000000_guess"}
    statuses = [stack.call("GET", "/v1/models", "fr-interior/app", headers=bad).status_code for _ in range(5)]
    assert statuses == [401] * 5
    throttled = stack.call("GET", "/v1/models", "fr-interior/app", headers=bad)
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    assert throttled.json()["error"]["code"] == "too_many_authentication_failures"
    assert stack.call("GET", "/v1/models", "fr-interior/app").status_code == 200  # a valid key works
    for _ in range(5):  # the same episode: prolonged, not reported again
        assert stack.call("GET", "/v1/models", "fr-interior/app", headers=bad).status_code == 429
    (entry,) = [i for i in stack.ledger.entries(kind="security", limit=100)["data"]]
    assert entry["entry"]["detail"]["event"] == "auth_failure_burst"
    record = only(stack.records(), "auth_failure_burst")
    check_common(record, 3002, "auth_failure_burst")
    assert record["class_name"] == "Authentication" and record["status"] == "Failure"
    assert record["src_endpoint"] == {"ip": "127.0.0.1"} and record["count"] == 5
    assert record["unmapped"]["ledger_index"] == entry["index"]


def test_a_policy_refusal_carries_its_routing_entry_index(stack):
    response = stack.chat("fr-interior/app", "SECRET")
    assert response.status_code == 403
    decision = response.headers["x-corridor-decision"]
    item = next(i for i in stack.ledger.entries(kind="routing", limit=100)["data"]
                if i["entry"]["decision_id"] == decision)
    record = only(stack.records(), "policy_refusal")
    check_common(record, 6003, "policy_refusal")
    assert record["severity"] == "High" and record["status"] == "Failure"
    assert record["unmapped"]["ledger_index"] == item["index"]
    assert record["unmapped"]["decision_id"] == decision and "CLASSIFIED_NEVER" in record["unmapped"]["reasons"]
    assert record["actor"]["user"]["uid"] == "fr-interior"
    assert record["resources"][0] == {"type": "model", "uid": "corridor-tiny",
                                      "data": {"marking": "SECRET", "data_flags": []}}
    assert record["api"]["operation"] == "/v1/chat/completions"


def test_crisis_steps_are_entity_management_records_with_their_ledger_index(stack):
    body = {"scope": {"tenants": ["fr-interior"], "markings": ["DR"], "models": ["corridor-tiny"],
                      "directions": ["FR->DE"]}, "reason": "drill", "valid_for_hours": 1}
    declaration = stack.call("POST", "/admin/crisis", "FR/operator", json=body).json()["id"]
    stack.call("POST", f"/admin/crisis/{declaration}/approve", "DE/operator")
    stack.call("POST", f"/admin/crisis/{declaration}/revoke", "DE/operator")
    records = [r for r in stack.records() if r["class_uid"] == 3004]
    entries = stack.ledger.entries(kind="crisis", limit=100)["data"]
    assert [r["metadata"]["event_code"] for r in records] == [
        "crisis_declared", "crisis_approved", "crisis_activated", "crisis_revoked"]
    assert [r["unmapped"]["ledger_index"] for r in records] == [i["index"] for i in entries]
    for record in records:
        check_common(record, 3004, record["metadata"]["event_code"])
        assert record["entity"] == {"type": "crisis_declaration", "uid": declaration}
    assert records[0]["actor"]["user"]["org"]["uid"] == "FR" and records[0]["activity_name"] == "Create"
    assert records[2]["severity"] == "High" and records[2]["activity_name"] == "Activate"
    assert records[3]["actor"]["user"]["org"]["uid"] == "DE"


def test_a_quarantined_node_is_a_detection_finding(tmp_path, default_policy):
    with Ledger.open(tmp_path) as ledger:
        feed = SecurityFeed(tmp_path / "feed.jsonl")
        follower = LedgerFollower(ledger, feed, start_at=0)
        forged = RayNode("ab" * 28, True, {"corridor.eu/pool": "fr-paris", "corridor.eu/jurisdiction": "DE"}, 2, 2)
        snapshot = build_snapshot(default_policy.bundle.pools, [forged])
        Inventory(default_policy, ledger=ledger)._report(list(snapshot.quarantined.values()))
        follower.poll()
        feed.close()
        (record,) = [json.loads(line) for line in feed.path.read_text().splitlines()]
    check_common(record, 2004, "node_quarantined")
    assert record["class_name"] == "Detection Finding" and record["status"] == "New"
    assert record["resources"][0]["uid"] == forged.node_id
    assert "corridor.eu/jurisdiction=DE" in record["resources"][0]["labels"]
    assert record["finding_info"]["types"] == ["JURISDICTION_MISMATCH"]
    assert record["unmapped"]["ledger_index"] == 0


def test_a_placement_violation_is_a_detection_finding(tmp_path):
    with Ledger.open(tmp_path) as ledger:
        feed = SecurityFeed(tmp_path / "feed.jsonl")
        follower = LedgerFollower(ledger, feed, start_at=0)
        ledger.append(LedgerEntryDraft(kind="routing", tenant="fr-interior", allowed=True))
        ledger.append(LedgerEntryDraft(  # the shape Deployments writes when Ray put a replica elsewhere
            kind="violation", decision_id="dec_1", tenant="fr-interior", pool="fr-paris", jurisdiction="FR",
            node_id="node-x", allowed=False, reasons=["POOL_LABEL_MISMATCH"],
            detail={"action": "killed", "deployment": "dr", "replica": "dr-r1",
                    "landed_labels": {"corridor.eu/pool": "de-berlin"}}))
        follower.poll()
        feed.close()
        (record,) = [json.loads(line) for line in feed.path.read_text().splitlines()]
    check_common(record, 2004, "placement_violation")
    assert record["severity"] == "High" and record["unmapped"]["ledger_index"] == 1
    assert [r["type"] for r in record["resources"]] == ["replica", "ray_node"]


def test_tamper_found_by_audit_verify_is_reported_with_the_first_bad_index(tmp_path):
    with Ledger.open(tmp_path) as ledger:
        ledger.append_many([LedgerEntryDraft(kind="placement", tenant="fr-interior", allowed=True,
                                             detail={"seq": i}) for i in range(6)])
        ledger.latest_tree_head()
    connection = sqlite3.connect(tmp_path / "ledger.db")
    connection.execute("DROP TRIGGER IF EXISTS entries_no_update")
    leaf = bytearray(connection.execute("SELECT leaf FROM entries WHERE idx = 3").fetchone()[0])
    leaf[leaf.index(b'"tenant":"') + 10] ^= 0x01
    connection.execute("UPDATE entries SET leaf = ? WHERE idx = 3", (bytes(leaf),))
    connection.commit()
    connection.close()
    result = CliRunner().invoke(audit.app, ["verify", "--home", str(tmp_path)])
    assert result.exit_code == 1 and "security feed" in result.output
    (record,) = [json.loads(line) for line in (tmp_path / "security-events.jsonl").read_text().splitlines()]
    check_common(record, 2004, "ledger_tamper")
    assert record["severity"] == "Critical" and record["unmapped"]["ledger_index"] == 3
    assert record["unmapped"]["check"] == "leaf_hash"
    assert record["resources"][0]["type"] == "ledger"


def test_a_tenant_over_its_quota_gets_429_with_retry_after_and_one_report(tmp_path):
    document = yaml.safe_load(default_bundle_path().read_text())
    for tenant in document["tenants"]:
        if tenant["id"] == "fr-interior":
            tenant["quotas"]["requests_per_minute"] = 2
    policy = Policy(load_bundle("quota.yaml", text=yaml.safe_dump(document)))
    with defence_stack(tmp_path, pools=("fr-paris",), policy=policy) as stack:
        assert [stack.chat("fr-interior/app", "DR").status_code for _ in range(2)] == [200, 200]
        for _ in range(2):
            limited = stack.chat("fr-interior/app", "DR")
            assert limited.status_code == 429
            assert 1 <= int(limited.headers["retry-after"]) <= 30
            error = limited.json()["error"]
            assert (error["code"], error["type"]) == ("rate_limit_exceeded", "requests")
            assert "2 requests per minute" in error["message"]
        assert stack.chat("de-federal-it/app", "VS-NfD").status_code != 429, "other tenants keep their own"
        record = only(stack.records(), "rate_limited")
    check_common(record, 6003, "rate_limited")
    assert record["actor"]["user"]["uid"] == "fr-interior" and "ledger_index" not in record["unmapped"]


def test_the_openai_sdk_sees_a_rate_limit_error(tmp_path):
    import openai

    document = yaml.safe_load(default_bundle_path().read_text())
    document["tenants"][1]["quotas"]["requests_per_minute"] = 1
    policy = Policy(load_bundle("quota.yaml", text=yaml.safe_dump(document)))
    with defence_stack(tmp_path, pools=("fr-paris",), policy=policy) as stack:
        client = openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.keys["fr-interior/app"], max_retries=0)
        client.chat.completions.create(model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="corridor-tiny", messages=[{"role": "user", "content": "x"}])
        assert info.value.response.headers["retry-after"]


class TestSyslog:
    RECORD = ocsf_record(2004, 1, "Create", event_code="node_quarantined", severity_id=4, status_id=1,
                         message="node ab quarantined — étiquette", actor={},
                         resources=[{"type": "ray_node", "uid": "ab"}], ledger_index=9)
    PATTERN = re.compile(r"^<(\d+)>1 (\S+) (\S+) corridor (\d+) (\S+) - (.*)$", re.S)

    def parse(self, message: bytes):
        match = self.PATTERN.match(message.decode("ascii"))
        assert match, message
        pri, timestamp, host, _, msgid, body = match.groups()
        return int(pri), timestamp, host, msgid, json.loads(body)

    def test_the_message_is_rfc5424_with_the_record_as_ascii_json(self):
        pri, timestamp, host, msgid, body = self.parse(rfc5424(self.RECORD, hostname="gw-1"))
        assert pri == 10 * 8 + 3, "facility security/authorization, severity error for High"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", timestamp)
        assert (host, msgid) == ("gw-1", "DetectionFinding")
        assert body == self.RECORD

    def test_udp_one_datagram_per_record(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
            server.bind(("127.0.0.1", 0))
            server.settimeout(5)
            sink = SyslogSink(f"udp://127.0.0.1:{server.getsockname()[1]}")
            sink.write(self.RECORD)
            sink.write(self.RECORD)
            sink.close()
            messages = [server.recv(65535) for _ in range(2)]
        assert [self.parse(m)[4]["unmapped"]["ledger_index"] for m in messages] == [9, 9]

    def test_tcp_with_octet_counting_framing(self):
        received = bytearray()
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)

            def accept():
                connection, _ = server.accept()
                with connection:
                    while chunk := connection.recv(65535):
                        received.extend(chunk)

            thread = threading.Thread(target=accept)
            thread.start()
            sink = SyslogSink(f"tcp://127.0.0.1:{server.getsockname()[1]}")
            sink.write(self.RECORD)
            sink.write(self.RECORD)
            sink.close()
            thread.join(5)
        frames, rest = [], bytes(received)
        while rest:
            length, _, rest = rest.partition(b" ")
            frames.append(rest[:int(length)])
            rest = rest[int(length):]
        assert len(frames) == 2 and self.parse(frames[1])[4] == self.RECORD

    def test_a_syslog_target_that_is_down_never_breaks_the_feed(self, tmp_path):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        feed = SecurityFeed(tmp_path / "feed.jsonl", syslog=f"tcp://127.0.0.1:{port}")
        feed.emit(self.RECORD)
        feed.syslog.flush()
        feed.close()
        assert feed.syslog.dropped == 1
        assert json.loads(feed.path.read_text()) == self.RECORD
