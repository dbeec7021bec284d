"""What the tests do with the console page: sign in, go to a view, wait, read, take screenshots."""

from __future__ import annotations

import base64
from pathlib import Path

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from console_stack import ConsoleStack

#: Failed loads the console expects: probes whose 401/403/404 hide a view.
EXPECTED_REFUSALS = (" 401 ", " 403 ", " 404 ")


class ConsolePage:
    def __init__(self, driver, stack: ConsoleStack, screenshots: Path) -> None:
        self.driver, self.stack, self.screenshots = driver, stack, screenshots

    @property
    def url(self) -> str:
        return self.stack.url + "/console"

    # -- navigation ---------------------------------------------------------------------

    def reset(self) -> None:
        """A fresh page: no key, no pinned key, English."""
        self.driver.get(self.url)
        self.driver.execute_script("sessionStorage.clear(); localStorage.clear();")
        self.driver.get_log("browser")
        self.load()

    def load(self, route: str = "") -> None:
        """A full page load (not a same-document hash change)."""
        self.driver.get("about:blank")
        self.driver.get(f"{self.url}#{route}")

    def sign_in(self, who: str, route: str = "", *, key: str | None = None) -> None:
        """Sign out whoever is signed in, and sign in as ``who`` (a key of the stack) or with ``key``."""
        if self.driver.current_url.startswith(self.stack.url):
            self.driver.execute_script("sessionStorage.clear()")
        self.load(route)
        field = self.wait("#api-key")
        field.send_keys(key if key is not None else self.stack.keys[who])
        field.send_keys(Keys.ENTER)
        self.until(lambda d: d.find_element(By.ID, "who").text or d.find_elements(By.ID, "signin-error"))
        self.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "main > p.loading"))

    def go(self, route: str) -> None:
        """Same-document navigation, as a click on a link would do."""
        self.driver.execute_script("location.hash = arguments[0]", route)
        self.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "main > p.loading"))

    # -- reading -------------------------------------------------------------------------

    def until(self, condition, timeout: float = 15):
        """Wait for ``condition``; the page re-renders as data arrives, so stale elements are retried."""
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(StaleElementReferenceException,)).until(condition)

    def wait(self, css: str, timeout: float = 15):
        return self.until(lambda d: d.find_element(By.CSS_SELECTOR, css), timeout)

    def find(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.wait(css).text

    def table(self, css: str) -> list[list[str]]:
        """The cells' text of every body row of the table at ``css``, in one round trip."""
        self.wait(css)
        return self.driver.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr'))"
            ".map(tr => Array.from(tr.querySelectorAll('td')).map(td => td.innerText.trim()))", css)

    def nav(self) -> list[str]:
        return [a.get_attribute("id").removeprefix("nav-") for a in self.find("#nav a")]

    def current(self) -> str | None:
        links = self.find('#nav a[aria-current="page"]')
        return links[0].get_attribute("id").removeprefix("nav-") if links else None

    def select(self, css: str, value: str) -> None:
        Select(self.wait(css)).select_by_value(value)

    def session_storage(self) -> dict[str, str]:
        return self.driver.execute_script(
            "return Object.fromEntries(Object.keys(sessionStorage).map(k => [k, sessionStorage.getItem(k)]))")

    def local_storage(self) -> dict[str, str]:
        return self.driver.execute_script(
            "return Object.fromEntries(Object.keys(localStorage).map(k => [k, localStorage.getItem(k)]))")

    def run_module(self, module: str, body: str, *args):
        """Import a console module in the page and run ``body`` with it as ``m`` (async)."""
        script = ("const done = arguments[arguments.length - 1]; const args = Array.from(arguments).slice(0, -1);"
                  f"import('/console/static/{module}').then(async (m) => {{ {body} }})"
                  ".then(done, (e) => done({error: String(e)}));")
        return self.driver.execute_async_script(script, *args)

    def browser_errors(self) -> list[str]:
        """Console messages of level SEVERE, except the refusals that hide views."""
        return [entry["message"] for entry in self.driver.get_log("browser")
                if entry["level"] == "SEVERE" and not any(code in entry["message"] for code in EXPECTED_REFUSALS)]

    # -- artifacts -----------------------------------------------------------------------

    def shot(self, name: str, *, full: bool = True) -> Path:
        """Save a PNG of the page (whole length with ``full``) as ``<screenshots>/<name>.png``."""
        path = self.screenshots / f"{name}.png"
        if full:
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
            data = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": 1280, "height": height, "scale": 1}})["data"]
            path.write_bytes(base64.b64decode(data))
        else:
            self.driver.execute_script("window.scrollTo(0, 0)")
            self.driver.save_screenshot(str(path))
        return path
