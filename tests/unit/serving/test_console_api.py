"""The console's package data and read-only APIs (no browser: see tests/browser for the page)."""

from __future__ import annotations

import json

import httpx
import pytest

from gateway_stack import gateway_stack
from serving.console.api import read_tail
from serving.console.router import CONTENT_SECURITY_POLICY, load_assets
from serving.feed import SecurityFeed


def records(path, severities):
    feed = SecurityFeed(path)
    for n, severity in enumerate(severities):
        feed.emit({"n": n, "severity_id": severity, "padding": "x" * 200})
    feed.close()


class TestReadTail:
    def test_the_newest_records_come_first_across_read_blocks(self, tmp_path):
        path = tmp_path / "feed.jsonl"
        records(path, [1] * 1000)  # ~250 kB: several 64 kB blocks
        found, more = read_tail(path, 300)
        assert [r["n"] for r in found] == list(range(999, 699, -1)) and more
        found, more = read_tail(path, 1000)
        assert [r["n"] for r in found] == list(range(999, -1, -1)) and not more

    def test_a_filter_keeps_only_matching_records(self, tmp_path):
        path = tmp_path / "feed.jsonl"
        records(path, [1, 4, 2, 5, 4])
        found, more = read_tail(path, 10, lambda r: r["severity_id"] >= 4)
        assert [r["n"] for r in found] == [4, 3, 1] and not more

    def test_a_torn_last_line_is_skipped_and_a_missing_file_is_empty(self, tmp_path):
        path = tmp_path / "feed.jsonl"
        records(path, [1, 1])
        with open(path, "ab") as handle:
            handle.write(b'{"n": 2, "sever')
        assert [r["n"] for r in read_tail(path, 10)[0]] == [1, 0]
        assert read_tail(tmp_path / "none.jsonl", 10) == ([], False)


def test_every_asset_is_in_the_package_with_its_media_type():
    assets = load_assets()
    assert {"index.html", "app.js", "console.css", "logo.svg", "verify.js", "merkle.js", "json.js"} <= set(assets)
    assert assets["app.js"].media_type.startswith("text/javascript")
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY


@pytest.fixture
def stack(tmp_path):
    with gateway_stack(tmp_path) as built:
        yield built


def call(stack, path, who=None, **params):
    headers = {"authorization": f"Bearer {stack.keys[who]}"} if who else {}
    return httpx.get(stack.url + path, headers=headers, params=params, timeout=10)


class TestConsoleApis:
    def test_the_page_needs_no_key_and_carries_the_policy(self, stack):
        response = call(stack, "/console")
        assert response.status_code == 200 and response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        again = httpx.get(stack.url + "/console", headers={"if-none-match": response.headers["etag"]})
        assert again.status_code == 304

    @pytest.mark.parametrize(("who", "want"), [
        ("fr-interior/app", {"role": "app", "tenant": "fr-interior", "jurisdiction": None, "audit_scope": None}),
        ("*/auditor", {"role": "auditor", "tenant": None, "jurisdiction": None, "audit_scope": "*"}),
        ("fr-interior/auditor", {"role": "auditor", "tenant": None, "jurisdiction": None,
                                 "audit_scope": ["fr-interior"]}),
        ("FR/operator", {"role": "operator", "tenant": None, "jurisdiction": "FR", "audit_scope": None}),
    ], ids=["an app key", "a global auditor", "a scoped auditor", "an operator"])
    def test_whoami_tells_callers_who_they_are(self, stack, who, want):
        body = call(stack, "/console/api/whoami", who).json()
        assert {k: body[k] for k in want} == want and body["subject"].startswith("key:")

    def test_whoami_without_a_key_is_401(self, stack):
        assert call(stack, "/console/api/whoami").status_code == 401

    def test_the_corridor_lists_pools_with_accreditations_and_only_the_tenants_in_scope(self, stack):
        body = call(stack, "/console/api/corridor", "fr-interior/auditor").json()
        paris = next(p for p in body["pools"] if p["id"] == "fr-paris")
        assert {a["id"] for a in paris["accreditations"]} == {"secnumcloud-3.2", "hds", "dr-homologation"}
        assert not any(a["expired"] for a in paris["accreditations"])
        assert [t["id"] for t in body["tenants"]] == ["fr-interior"]
        assert len(call(stack, "/console/api/corridor", "FR/operator").json()["tenants"]) == 5
        assert call(stack, "/console/api/corridor", "fr-interior/app").status_code == 403

    def test_the_security_feed_is_for_operators_and_off_without_a_feed(self, stack):
        assert call(stack, "/console/api/security-events", "*/auditor").status_code == 403
        off = call(stack, "/console/api/security-events", "FR/operator")
        assert off.status_code == 404 and off.json()["error"]["code"] == "security_feed_disabled"

    def test_the_security_feed_serves_the_newest_records_first(self, stack, tmp_path):
        stack.gateway.events = SecurityFeed(tmp_path / "events.jsonl")
        for n in range(5):
            stack.gateway.events.emit({"n": n, "severity_id": 2 + n % 2})
        body = call(stack, "/console/api/security-events", "FR/operator", limit=3, min_severity=3).json()
        assert [r["n"] for r in body["data"]] == [3, 1] and body["has_more"] is False
        assert call(stack, "/console/api/security-events", "FR/operator", limit=0).status_code == 400
        stack.gateway.events.close()
        assert json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])["n"] == 0
