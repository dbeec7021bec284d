"""Who sees what, where the key is kept, what the page may load, languages and the keyboard."""

from __future__ import annotations

import re

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from serving.console.router import load_assets

pytestmark = pytest.mark.browser

VIEWS = {"ledger", "pictures", "operator", "models"}


@pytest.mark.parametrize(("who", "shown"), [
    ("*/auditor", ["ledger", "pictures"]),
    ("fr-interior/auditor", ["ledger", "pictures"]),
    ("FR/operator", ["pictures", "operator"]),
    ("DE/operator", ["pictures", "operator"]),
    ("fr-interior/app", ["models"]),
    ("de-health/admin", ["models"]),
], ids=["a global auditor sees the ledger and pictures, not operations",
        "a scoped auditor sees the ledger and pictures, not operations",
        "a French operator sees operations and pictures, not the ledger",
        "a German operator sees operations and pictures, not the ledger",
        "an application key sees only its models",
        "a tenant admin key sees only its models"])
def test_each_role_sees_exactly_the_views_its_apis_answer(page, who, shown):
    page.sign_in(who)
    assert page.nav() == shown
    assert page.current() == shown[0]
    for hidden in sorted(VIEWS - set(shown)):
        page.go(f"/{hidden}")
        assert page.current() == shown[0], f"{who} reached the hidden view {hidden} by its URL"
    assert page.browser_errors() == []


def test_a_scoped_auditor_reads_only_its_tenants_entries(page, stack):
    page.sign_in("fr-interior/auditor", "/ledger")
    page.wait("#entries tbody tr")
    tenants = {row.text for row in page.find("#entries tbody td:nth-child(4)")}
    assert tenants == {"fr-interior"}
    assert page.wait("#f-tenant").tag_name == "select"
    assert [o.get_attribute("value") for o in page.find("#f-tenant option")] == ["fr-interior"]


def test_the_pictures_show_live_capacity_only_to_operators_and_charts_only_to_auditors(page):
    page.sign_in("FR/operator", "/pictures")
    page.wait("#corridor svg")
    assert page.find("#charts-hidden") and not page.find("#charts")
    assert page.wait('[data-pool="fr-paris"] .pool-replicas').get_attribute("data-replicas") == "2"
    page.sign_in("*/auditor", "/pictures")
    page.wait("#charts svg")
    assert not page.find("[data-replicas]") and not page.find("#charts-hidden")


def test_the_key_lives_in_session_storage_only_and_sign_out_forgets_it(page, stack):
    key = stack.keys["*/auditor"]
    page.sign_in("*/auditor")
    assert key in page.session_storage().values()
    assert key not in page.local_storage().values()
    assert page.driver.execute_script("return document.cookie") == ""
    assert key not in page.driver.current_url
    page.wait("#signout").click()
    page.wait("#signin")
    assert page.session_storage() == {} and page.nav() == []


def test_a_wrong_key_is_refused_with_a_message_and_not_kept(page):
    page.sign_in("", key="cor_000000000000_not-a-real-key")
    assert "not accepted" in page.text("#signin-error")
    assert page.session_storage() == {}
    assert page.nav() == []


def test_every_console_response_carries_a_strict_content_security_policy(stack):
    assets = sorted(load_assets())
    for path in ["/console", "/console/"] + [f"/console/static/{name}" for name in assets if name != "index.html"]:
        response = httpx.get(stack.url + path)
        assert response.status_code == 200, path
        policy = response.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "default-src 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        assert "require-trusted-types-for 'script'" in policy
        assert response.headers["x-content-type-options"] == "nosniff"
    assert httpx.get(stack.url + "/console/static/../app.py").status_code == 404
    assert httpx.get(stack.url + "/console/static/nothing.js").status_code == 404


def test_every_asset_ships_in_the_package_and_names_no_outside_address():
    outside = re.compile(rb"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.I)
    for name, asset in load_assets().items():
        found = [m.group(0) for m in outside.finditer(asset.body) if m.group(0) != b"http://www.w3.org"]
        assert found == [], f"{name} names {found}"
        assert b"<script>" not in asset.body and b"style=" not in asset.body, name


def test_the_page_loads_nothing_from_elsewhere_and_violates_no_policy(page, stack):
    page.sign_in("*/auditor", "/pictures")
    page.wait("#charts svg")
    page.go("/ledger")
    page.wait("#entries")
    resources = page.driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(name.startswith(stack.url + "/") for name in resources), resources
    assert page.browser_errors() == []


def test_the_language_switch_relabels_the_page_in_french_and_german(page):
    page.select("#lang", "fr")
    assert page.text("#h-signin") == "Connexion"
    page.sign_in("*/auditor")
    assert page.driver.execute_script("return document.documentElement.lang") == "fr"
    assert page.text("#nav-ledger") == "Registre"
    assert page.text("main h1") == "Registre des placements"
    page.select("#lang", "de")
    page.until(lambda d: page.text("#nav-ledger") == "Ledger" and page.text("#nav-pictures") == "Übersicht")
    assert page.text("main h1") == "Platzierungs-Ledger"
    keys = page.run_module("i18n.js", "return m.KEYS;")
    assert keys["fr"] == keys["en"] and keys["de"] == keys["en"]


def test_the_console_is_usable_with_the_keyboard_alone(page, stack):
    assert page.driver.switch_to.active_element.get_attribute("id") == "api-key"
    actions = ActionChains(page.driver)
    actions.send_keys(stack.keys["*/auditor"], Keys.ENTER).perform()
    page.wait("#entries tbody tr")
    assert page.wait(".skip").get_attribute("href").endswith("#main")
    # Focus moved to the new content; Shift+Tab leads back through the header to the views.
    for _ in range(8):
        ActionChains(page.driver).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
        if page.driver.switch_to.active_element.get_attribute("id") == "nav-pictures":
            break
    assert page.driver.switch_to.active_element.get_attribute("id") == "nav-pictures"
    ActionChains(page.driver).send_keys(Keys.ENTER).perform()
    page.wait("#corridor svg")
    assert page.current() == "pictures"
    # The verify button of an entry is a native button: Enter presses it.
    page.go("/entry/3")
    button = page.wait("#verify")
    button.send_keys(Keys.ENTER)
    page.until(lambda d: page.wait("#verdict").get_attribute("data-result") == "verified")
