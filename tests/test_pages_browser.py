"""The API docs in headless Chromium (see tests/browser.py). Screenshots go to test-artifacts/."""

from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions

from tests.browser import needs_chromium, requests_sent, wait_for

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def screenshot(browser: WebDriver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    browser.set_window_size(1280, browser.execute_script("return document.documentElement.scrollHeight") + 40)
    assert browser.save_screenshot(str(ARTIFACTS / name))


def test_api_docs_render_from_local_files(live_server, browser):
    browser.get(f"{live_server.url}/api/docs/")

    wait_for(browser, expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
    paths = {element.text for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert paths == {"/api/chatkit/session", "/api/chatkit/transcript"}
    fetched = [r.url for r in requests_sent(browser) if not r.url.startswith("data:")]
    assert f"{live_server.url}/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in fetched
    assert all(url.startswith(f"{live_server.url}/") for url in fetched), fetched
    screenshot(browser, "api-docs.png")
