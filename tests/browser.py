"""Headless Chromium driven through ChromeDriver (Selenium), for the tests that use pages.

Debian's `chromium` and `chromium-driver` packages provide both (`.ci/install-chromium`
installs them); without them the tests marked `needs_chromium` are skipped and say why.
The `browser` fixture (tests/conftest.py) hands each test a fresh browser.
"""

import shutil
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
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER or ""), options=options)
    driver.set_page_load_timeout(30)
    return driver


def wait_for(browser: WebDriver, condition: Any, timeout: float = 15) -> Any:
    return WebDriverWait(browser, timeout).until(condition)
