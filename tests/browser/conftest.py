"""The browser tier: the console driven in headless Chromium against a real gateway.

Needs Debian's ``chromium`` and ``chromium-driver`` (``make browser-deps`` installs them
with apt-get); nothing is downloaded. Screenshots of the main views are saved under
``$CORRIDOR_CONSOLE_SCREENSHOTS`` (default: a pytest temporary directory, printed at the
end of the run); with ``CORRIDOR_UPDATE_DOCS_SCREENSHOTS=1`` the two README images in
``docs/images/`` are rewritten from this run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from console_page import ConsolePage
from console_stack import console_stack

REPO = Path(__file__).resolve().parents[2]
DOCS_IMAGES = {"console-verify": "console-verify.png", "console-pictures": "console-pictures.png"}


def _binary(env: str, names: tuple[str, ...]) -> str | None:
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if found:
            return found
    return None


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One gateway for the tier, filled with real traffic (see console_stack.fill)."""
    with console_stack(tmp_path_factory.mktemp("console-home")) as built:
        yield built


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory, request) -> Path:
    folder = Path(os.environ.get("CORRIDOR_CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("console-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    yield folder
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"console screenshots: {folder}")
    if os.environ.get("CORRIDOR_UPDATE_DOCS_SCREENSHOTS") == "1":
        target = REPO / "docs" / "images"
        target.mkdir(parents=True, exist_ok=True)
        for shot, name in DOCS_IMAGES.items():
            if (folder / f"{shot}.png").exists():
                shutil.copyfile(folder / f"{shot}.png", target / name)


@pytest.fixture(scope="module")
def driver():
    """Headless Chromium at 1280×800 through Debian's chromedriver; fails clearly without them.

    One per module, so no browser outlives the browser tier: the end-to-end tier that runs
    after it watches every socket of this process tree (the autarky no-egress test)."""
    chromium = _binary("CHROMIUM", ("chromium", "chromium-browser"))
    chromedriver = _binary("CHROMEDRIVER", ("chromedriver",))
    if chromium is None or chromedriver is None:
        pytest.fail("the browser tier needs Debian's chromium and chromium-driver packages "
                    f"(found chromium={chromium}, chromedriver={chromedriver}): run `make browser-deps` "
                    "as root, or `apt-get install chromium chromium-driver`; set CHROMIUM / CHROMEDRIVER "
                    "to use other binaries", pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("the browser tier needs the 'selenium' package: pip install -e '.[dev]'", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,800", "--lang=en-US", "--disable-extensions",
                     "--no-first-run", "--disable-background-networking", "--disable-sync",
                     "--disable-component-update", "--disable-default-apps"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                            {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
    browser.set_script_timeout(20)
    yield browser
    browser.quit()


@pytest.fixture
def page(driver, stack, screenshots) -> ConsolePage:
    """The console page, signed out, with no tampering and no pinned key."""
    stack.tamper.mode = None
    console = ConsolePage(driver, stack, screenshots)
    console.reset()
    yield console
    stack.tamper.mode = None
