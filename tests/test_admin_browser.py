"""The admin in a real browser: headless Chromium (see tests/browser.py)."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions

from chatkit_api.models import ChatKitThreadItem, Transcript, TranscriptStatus
from tests.browser import needs_chromium, wait_for
from tests.chatkit_protocol import ChatKitBrowser, done_items, thread_id_of

pytestmark = [needs_chromium, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery staple"


def test_staff_log_in_search_and_read_a_transcript(live_server, browser, settings, django_user_model):
    # The live server speaks plain HTTP; the admin's cookies are Secure outside debug.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    django_user_model.objects.create_superuser("staff", "staff@shop.example", PASSWORD)
    wanted = Transcript.objects.create(
        thread_id="cthr_browser",
        requested_by="visitor",
        name="Zoë Brontë",
        email="zoe@visitor.example",
        vehicle="2019 Škoda Octavia",
        page_url="https://shop.example/quote",
        status=TranscriptStatus.SENT,
        recipients=["leads@shop.example"],
        subject="[Chat] Zoë Brontë - quote",
        body_text="Mode: quote\n\n---\n\n[2026-11-25 16:49 UTC] User: Front brakes squeal.\n",
        body_html="<!DOCTYPE html><html><body><h1>[Chat] Zoë Brontë - quote</h1>"
        "<div>User: Front brakes squeal.</div></body></html>",
    )
    Transcript.objects.create(
        thread_id="cthr_other", requested_by="server", name="Sam Other", vehicle="Ford Focus"
    )

    browser.get(f"{live_server.url}/admin/")
    wait_for(browser, expected_conditions.presence_of_element_located((By.ID, "id_username")))
    browser.find_element(By.ID, "id_username").send_keys("staff")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(browser, expected_conditions.presence_of_element_located((By.LINK_TEXT, "Transcripts")))

    browser.find_element(By.LINK_TEXT, "Transcripts").click()
    search = wait_for(browser, expected_conditions.presence_of_element_located((By.ID, "searchbar")))
    search.send_keys("Octavia")
    search.submit()
    wait_for(browser, expected_conditions.url_contains("q=Octavia"))

    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1
    assert "Zoë Brontë" in rows[0].text
    assert "zoe@visitor.example" in rows[0].text

    rows[0].find_element(By.LINK_TEXT, "Zoë Brontë").click()
    wait_for(browser, expected_conditions.url_contains(f"/transcript/{wanted.pk}/"))
    assert "View transcript" in browser.find_element(By.TAG_NAME, "h1").text
    page_link = browser.find_element(By.LINK_TEXT, "https://shop.example/quote")
    assert page_link.get_attribute("target") == "_blank"
    assert "User: Front brakes squeal." in browser.find_element(By.CSS_SELECTOR, "pre").text

    frame = browser.find_element(By.CSS_SELECTOR, "iframe[title='The transcript mail']")
    browser.switch_to.frame(frame)
    assert browser.find_element(By.TAG_NAME, "h1").text == "[Chat] Zoë Brontë - quote"
    assert "User: Front brakes squeal." in browser.find_element(By.TAG_NAME, "body").text
    browser.switch_to.default_content()


def test_the_transcript_list_fits_a_1400_pixel_window(live_server, browser, settings, django_user_model):
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    django_user_model.objects.create_superuser("staff", "staff@shop.example", PASSWORD)
    for number in range(5):
        Transcript.objects.create(
            thread_id=f"cthr_wide_{number}",
            requested_by="visitor",
            name="Maximiliane Wolkenstein-Trostburg von Hohenberg",
            email="maximilianewolkensteintrostburg.hohenberg@arathersmallbutlongcompanyname.example",
            mode="recap",
            recipients=[
                "leads@shop.example",
                "workshop-bookings@shop.example",
                "owner@shop.example",
                "maximilianewolkensteintrostburg.hohenberg@arathersmallbutlongcompanyname.example",
            ],
            status=TranscriptStatus.FAILED,
        )
    browser.set_window_size(1400, 900)
    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.ID, "id_username").send_keys("staff")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(browser, expected_conditions.presence_of_element_located((By.LINK_TEXT, "Transcripts")))

    browser.get(f"{live_server.url}/admin/chatkit_api/transcript/")
    wait_for(browser, expected_conditions.presence_of_element_located((By.ID, "result_list")))

    # The page, and the box Django's admin scrolls a wide table in.
    widths = browser.execute_script(
        "const results = document.querySelector('.results');"
        "return [document.documentElement.clientWidth, document.documentElement.scrollWidth,"
        " results.clientWidth, results.scrollWidth];"
    )
    viewport, page, box, table = widths
    assert page <= viewport and table <= box, f"page {page} in {viewport} px, table {table} in {box} px"


def test_staff_find_the_threads_with_a_thumbs_down_and_the_answer_it_is_about(
    live_server, browser, settings, django_user_model, self_hosted
):
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    django_user_model.objects.create_superuser("staff", "staff@shop.example", PASSWORD)
    visitor = ChatKitBrowser()
    judged = thread_id_of(visitor.say("Front brakes squeal."))
    [disliked] = [
        item["id"]
        for item in done_items(visitor.say("Pads or discs?", judged))
        if item["type"] == "assistant_message"
    ]
    visitor.call("items.feedback", thread_id=judged, item_ids=[disliked], kind="negative")
    liked = ChatKitBrowser()
    liked_thread = thread_id_of(liked.say("Do you fit tyres?"))
    [liked_answer] = ChatKitThreadItem.objects.filter(thread_id=liked_thread, type="assistant_message")
    liked.call("items.feedback", thread_id=liked_thread, item_ids=[liked_answer.item_id], kind="positive")
    thread_id_of(ChatKitBrowser().say("Do you do MOTs?"))

    browser.get(f"{live_server.url}/admin/login/")
    browser.find_element(By.ID, "id_username").send_keys("staff")
    browser.find_element(By.ID, "id_password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(browser, expected_conditions.presence_of_element_located((By.LINK_TEXT, "ChatKit threads")))
    browser.find_element(By.LINK_TEXT, "ChatKit threads").click()
    wait_for(browser, expected_conditions.presence_of_element_located((By.ID, "result_list")))
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")) == 3

    browser.find_element(By.LINK_TEXT, "With thumbs down").click()
    wait_for(browser, expected_conditions.url_contains("feedback=negative"))

    [row] = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert "Front brakes squeal." in row.text
    assert "Thumbs down" in row.text
    # The row's link is its first column, the thread's start.
    row.find_element(By.CSS_SELECTOR, "th a").click()
    wait_for(browser, expected_conditions.url_contains("/change/"))
    conversation = browser.find_element(By.CSS_SELECTOR, "pre").text
    assert "Assistant: You said: Front brakes squeal.\n\n" in conversation
    assert "Assistant: You said: Pads or discs?\nVisitor feedback: Thumbs down" in conversation
    [item_row] = [
        row
        for row in browser.find_elements(By.CSS_SELECTOR, ".inline-group tbody tr")
        if disliked in row.text
    ]
    assert "Thumbs down (" in item_row.text
