"""The operator's view: pools, quarantined nodes, deployments and replicas, the crisis drill
(declare, the two-person rule, approve, revoke) run through the page with the French and
German operator keys, and the security event feed, newest first."""

from __future__ import annotations

import pytest

from console_stack import QUARANTINED_NODE

pytestmark = pytest.mark.browser


def declaration_row(page, declaration_id: str):
    return page.wait(f'#crisis-table tr[data-declaration="{declaration_id}"]')


def test_pools_quarantined_nodes_and_replicas_are_shown_with_their_state(page):
    page.sign_in("FR/operator", "/operator")
    pools = {tr.get_attribute("data-pool"): tr.text for tr in page.find("#pools-table tbody tr")}
    assert set(pools) == {"fr-paris", "fr-lyon", "de-frankfurt", "de-berlin"}
    assert "7 / 8" in pools["fr-paris"] and QUARANTINED_NODE in pools["fr-paris"]
    quarantined = page.text(f'#quarantine-table tr[data-node="{QUARANTINED_NODE}"]')
    assert "JURISDICTION_MISMATCH" in quarantined and "corridor.eu/jurisdiction=DE" in quarantined
    replicas = {tr.get_attribute("data-replica"): tr.text for tr in page.find("#deployments-table tr.replica")}
    assert set(replicas) == {"chat-fr-paris-r1", "chat-fr-lyon-r1", "chat-de-frankfurt-r1",
                             "chat-de-berlin-r1", "embed-fr-paris-r1"}
    assert all("ALIVE" in text for text in replicas.values())


def test_the_crisis_drill_runs_through_the_page_with_both_operators(page, stack):
    # The French operator declares; the page shows it pending and awaiting Germany.
    page.sign_in("FR/operator", "/operator")
    page.wait("#declare-form input[value='FR->DE']").click()
    for field, value in (("#c-tenants", "fr-interior"), ("#c-markings", "DR"), ("#c-models", "corridor-tiny"),
                         ("#c-reason", "fr-paris lost to a cyber attack (drill)"), ("#c-hours", "4")):
        element = page.wait(field)
        element.clear()
        element.send_keys(value)
    page.wait("#declare").click()
    message = page.wait("#crisis-message .notice").text
    declared = next(d for d in stack.crisis.list() if d.declaration.reason.endswith("(drill)"))
    assert declared.id in message and "awaiting DE" in message
    row = declaration_row(page, declared.id)
    assert row.get_attribute("data-status") == "pending" and "awaiting DE" in row.text

    # The declarer approving their own declaration is refused by the API, and the page says why.
    row.find_element("css selector", "button.approve").click()
    refusal = page.wait("#crisis-message .error").text
    assert "403 self_approval" in refusal and "two-person rule" in refusal
    assert declaration_row(page, declared.id).get_attribute("data-status") == "pending"

    # The German operator approves: active.
    page.sign_in("DE/operator", "/operator")
    declaration_row(page, declared.id).find_element("css selector", "button.approve").click()
    page.until(lambda d: declaration_row(page, declared.id).get_attribute("data-status") == "active")
    assert "backed by FR, DE" in declaration_row(page, declared.id).text
    page.shot("console-operator")

    # Either side revokes, at once.
    declaration_row(page, declared.id).find_element("css selector", "button.revoke").click()
    page.until(lambda d: declaration_row(page, declared.id).get_attribute("data-status") == "revoked")
    assert "revoked" in page.text("#crisis-message .notice")
    steps = [i["entry"]["detail"]["step"] for i in stack.ledger.entries(kind="crisis", limit=1000)["data"]
             if i["entry"]["declaration"] == declared.id]
    assert steps == ["declared", "approved", "activated", "revoked"]

    # The security feed shows the steps, newest first, with their severity.
    stack.follower.poll()
    page.wait("#feed-refresh").click()
    page.until(lambda d: declared.id in page.text("#feed-table tbody tr:first-child"))
    first = page.wait("#feed-table tbody tr:first-child")
    assert first.get_attribute("data-event") == "crisis_revoked" and "Medium" in first.text
    events = [tr.get_attribute("data-event") for tr in page.find("#feed-table tbody tr")][:4]
    assert events == ["crisis_revoked", "crisis_activated", "crisis_approved", "crisis_declared"]

    # The timeline of the pictures shows it revoked.
    page.go("/pictures")
    lane = page.wait(f'#timeline g.lane[data-declaration="{declared.id}"]')
    assert lane.get_attribute("class") == "lane status-revoked"


def test_the_feed_filters_by_severity(page, stack):
    page.sign_in("DE/operator", "/operator")
    page.wait("#feed-table")
    page.select("#feed-severity", "4")
    page.until(lambda d: all(int(tr.get_attribute("data-severity")) >= 4 for tr in page.find("#feed-table tbody tr")))
    events = {tr.get_attribute("data-event") for tr in page.find("#feed-table tbody tr")}
    assert "node_quarantined" in events and "crisis_declared" not in events
