"""The auditor's views: the ledger's filters and pages, an entry's decision, the export with
proofs verified in the browser, and the pictures drawn from the ledger."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from serving.cli import app as cli

pytestmark = pytest.mark.browser


HEADS = ["index", "time", "kind", "tenant", "pool", "jurisdiction", "decision", "reasons", "declaration"]


def rows(page) -> list[dict[str, str]]:
    page.wait("#entries tbody tr")
    return [dict(zip(HEADS, cells)) for cells in page.table("#entries")]


def test_the_ledger_filters_are_the_audit_api_parameters(page, stack):
    page.sign_in("*/auditor", "/ledger")
    assert len(rows(page)) == 25
    page.select("#f-kind", "routing")
    page.select("#f-jurisdiction", "DE")
    page.wait("#ledger-filters button[type=submit]").click()
    page.until(lambda d: all(r["jurisdiction"] == "DE" for r in rows(page)))
    found = rows(page)
    want = stack.ledger.entries(kind="routing", jurisdiction="DE", limit=25)["data"]
    assert [int(r["index"]) for r in found] == [i["index"] for i in want]
    assert {r["kind"] for r in found} == {"routing"}
    page.wait("#f-tenant").send_keys("de-health")
    page.wait("#ledger-filters button[type=submit]").click()
    page.until(lambda d: {r["tenant"] for r in rows(page)} == {"de-health"})


def test_the_ledger_pages_forward_and_back(page, stack):
    page.sign_in("*/auditor", "/ledger")
    first = [int(r["index"]) for r in rows(page)]
    assert first == list(range(25))
    page.wait("#page-next").click()
    page.until(lambda d: int(rows(page)[0]["index"]) == 25)
    second = [int(r["index"]) for r in rows(page)]
    assert second == list(range(25, min(50, stack.ledger.size)))
    page.wait("#page-prev").click()
    page.until(lambda d: int(rows(page)[0]["index"]) == 0)


def test_a_refused_entry_shows_its_decision_and_reason_codes(page, stack):
    items = stack.ledger.entries(kind="routing", limit=1000)["data"]
    refused = next(i for i in items if "CLASSIFIED_NEVER" in i["entry"]["reasons"])
    page.sign_in("*/auditor")
    page.go(f"/entry/{refused['index']}")
    assert "Refused" in page.text("#decision")
    codes = page.text("#reasons")
    for code in refused["entry"]["reasons"]:
        assert code in codes
    assert "no crisis declaration" in page.text("#declaration")


def test_an_entry_outside_the_scope_is_not_shown(page, stack):
    items = stack.ledger.entries(tenant="de-health", limit=1)["data"]
    page.sign_in("fr-interior/auditor")
    page.go(f"/entry/{items[0]['index']}")
    assert "No such entry" in page.text("main .error")


def test_a_tenants_export_is_verified_in_the_browser_and_saved_for_the_cli(page, stack, tmp_path):
    count = sum(1 for _ in stack.ledger.export(tenant="fr-interior"))
    page.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    page.sign_in("*/auditor", "/ledger")
    page.wait("#f-tenant").send_keys("fr-interior")
    page.wait("#export").click()
    verdict = page.wait("#export-verdict")
    assert verdict.get_attribute("class") == "verdict ok", verdict.text
    assert f"{count} entries exported" in verdict.text
    for button in page.find(".export-result button"):
        button.click()
    page.until(lambda d: len([p for p in tmp_path.iterdir() if p.suffix in (".json", ".jsonl")]) == 3)
    entries, head, key = (next(tmp_path.glob(pattern)) for pattern in
                          ("*.jsonl", "*-tree-head.json", "*-public-key.json"))
    assert len(entries.read_text().splitlines()) == count
    checked = CliRunner().invoke(cli, ["audit", "verify", "--home", str(tmp_path), "--export", str(entries),
                                       "--tree-head", str(head), "--public-key", str(key)])
    assert checked.exit_code == 0, checked.output


def test_a_tampered_export_is_not_called_verified(page, stack):
    page.sign_in("*/auditor", "/ledger")
    page.wait("#f-tenant").send_keys("fr-interior")
    stack.tamper.mode = "signature"
    page.wait("#export").click()
    assert "failed verification" in page.wait("#export-verdict").text


def test_the_pictures_draw_the_corridor_the_traffic_and_the_declarations(page, stack):
    page.sign_in("*/auditor", "/pictures")
    page.wait("#charts svg")
    assert {g.get_attribute("data-pool") for g in page.find("#corridor g.pool")} == {
        "fr-paris", "fr-lyon", "de-frankfurt", "de-berlin"}
    chips = {c.get_attribute("data-accreditation") for c in page.find('g.pool[data-pool="fr-paris"] .chip')}
    assert chips == {"secnumcloud-3.2", "hds", "dr-homologation"}
    arrows = page.find("#corridor g.crossing")
    assert [(a.get_attribute("data-declaration"), a.get_attribute("data-direction")) for a in arrows] == [
        (stack.active_declaration, "DE->FR")]
    assert "3 crossings" in arrows[0].text
    assert len(page.find("#chart-pool rect.bar")) > 3
    assert len(page.find("#chart-jurisdiction rect.bar")) > 3
    refusals = page.text("#chart-refusals")
    assert "CLASSIFIED_NEVER" in refusals and "MARKING_NOT_ALLOWED_FOR_TENANT" in refusals
    assert stack.active_declaration in page.text("#chart-crossings")
    lanes = {g.get_attribute("data-declaration"): g.get_attribute("class") for g in page.find("#timeline g.lane")}
    assert lanes[stack.active_declaration] == "lane status-active"
    assert lanes[stack.revoked_declaration] == "lane status-revoked"
    assert page.browser_errors() == []
    page.shot("console-pictures")
