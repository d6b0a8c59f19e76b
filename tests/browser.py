"""Headless Chromium driven through ChromeDriver (Selenium), for the tests that use pages.

Debian's `chromium` and `chromium-driver` packages provide both (`.ci/install-chromium`
installs them); without them the tests marked `needs_chromium` are skipped and say why.
The `browser` fixture (tests/conftest.py) hands each test a fresh browser.
"""

import json
import shutil
from dataclasses import dataclass
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Chromium and ChromeDriver on PATH (Debian: chromium, chromium-driver; "
    "`.ci/install-chromium` installs them)",
)


def chromium() -> WebDriver:
    options = Options()
    options.binary_location = CHROMIUM or ""
    for argument in (
        "--headless=new",
        # Chromium's sandbox cannot start as root, which is how CI runs.
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1024",
    ):
        options.add_argument(argument)
    # DevTools' network events, so that tests can read the requests a page made.
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER or ""), options=options)
    driver.set_page_load_timeout(30)
    return driver


def wait_for(browser: WebDriver, condition: Any, timeout: float = 15) -> Any:
    return WebDriverWait(browser, timeout).until(condition)


@dataclass
class SentRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: str | None


def requests_sent(browser: WebDriver) -> list[SentRequest]:
    """The requests the page made since the last call, with the headers as sent on the wire.

    The browser adds some headers (Origin, Cookie) only after `requestWillBeSent`; its
    `ExtraInfo` event carries the complete set.
    """
    sent: dict[str, SentRequest] = {}
    wire_headers: dict[str, dict[str, str]] = {}
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            request = params["request"]
            sent[params["requestId"]] = SentRequest(
                method=request["method"],
                url=request["url"],
                headers=request["headers"],
                body=request.get("postData"),
            )
        elif message["method"] == "Network.requestWillBeSentExtraInfo":
            wire_headers[params["requestId"]] = params["headers"]
    for request_id, headers in wire_headers.items():
        if request_id in sent:
            sent[request_id].headers = {name.lower(): value for name, value in headers.items()}
    return list(sent.values())
