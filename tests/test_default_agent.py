"""The shipped agent, answered by the real Agents SDK model over HTTP (the fake OpenAI API)."""

import json

import pytest

from chatkit_api.agent import DEFAULT_INSTRUCTIONS
from chatkit_api.models import ChatKitThread
from tests.chatkit_protocol import (
    ChatKitBrowser,
    assistant_texts,
    body_of,
    sse_events,
    thread_id_of,
    user_input,
)
from tests.fake_chatkit import API_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture
def default_agent(self_hosted, settings):
    settings.CHATKIT_AGENT = "chatkit_api.agent:default_agent"
    settings.CHATKIT_AGENT_MODEL = "gpt-test-mini"
    settings.CHATKIT_AGENT_INSTRUCTIONS = ""
    settings.CHATKIT_AGENT_INSTRUCTIONS_FILE = ""


def test_default_agent_calls_openai_with_the_settings(default_agent, fake_chatkit, settings, tmp_path):
    instructions = tmp_path / "instructions.md"
    instructions.write_text("You work at Brakes R Us.\nBe brief.\n", encoding="utf-8")
    settings.CHATKIT_AGENT_INSTRUCTIONS = "ignored when the file is set"
    settings.CHATKIT_AGENT_INSTRUCTIONS_FILE = str(instructions)
    browser = ChatKitBrowser()

    events = browser.say("Do you fit brake pads?")
    browser.say("On a Golf?", thread_id_of(events))

    assert assistant_texts(events) == ["Echo: Do you fit brake pads?"]
    first, second = fake_chatkit.requests_to("POST", "/v1/responses")
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert first.body["model"] == "gpt-test-mini"
    assert first.body["stream"] is True
    assert (
        first.body["instructions"]
        == "You work at Brakes R Us.\nBe brief.\n\nThe visitor's browser language: en."
    )
    assert [item["role"] for item in second.body["input"]] == ["user", "assistant", "user"]
    assert ChatKitThread.objects.get().items.count() == 4


def test_inline_instructions_and_the_built_in_ones(default_agent, fake_chatkit, settings):
    ChatKitBrowser().say("hello")
    settings.CHATKIT_AGENT_INSTRUCTIONS = "Answer in French."
    ChatKitBrowser().say("bonjour")

    built_in, inline = fake_chatkit.requests_to("POST", "/v1/responses")
    assert built_in.body["instructions"].startswith(DEFAULT_INSTRUCTIONS + "\n\n")
    assert inline.body["instructions"].startswith("Answer in French.\n\n")


def test_the_visitor_language_and_page_reach_the_instructions(default_agent, fake_chatkit):
    browser = ChatKitBrowser(HTTP_ACCEPT_LANGUAGE="fr-CH, fr;q=0.9, en;q=0.8")

    response = browser.client.post(
        "/api/chatkit",
        json.dumps({"type": "threads.create", "params": {"input": user_input("Bonjour")}}),
        content_type="application/json",
        HTTP_X_PAGE_URL="https://shop.example/freins?modele=golf",
    )
    assert assistant_texts(sse_events(body_of(response))) == ["Echo: Bonjour"]
    browser.say("Et les pneus ?")
    ChatKitBrowser(HTTP_REFERER="https://shop.example/tyres").say("Hi")

    with_header, without_header, from_referer = fake_chatkit.requests_to("POST", "/v1/responses")
    assert with_header.body["instructions"].endswith(
        "The visitor's browser language: fr-CH.\n"
        "The page the visitor is chatting from: https://shop.example/freins?modele=golf"
    )
    assert without_header.body["instructions"].endswith("The visitor's browser language: fr-CH.")
    assert from_referer.body["instructions"].endswith(
        "The visitor's browser language: en.\nThe page the visitor is chatting from: https://shop.example/tyres"
    )


@pytest.mark.parametrize(
    "page_url", ["javascript:alert(1)", "https://shop.example/" + "a" * 2000, "not a url"]
)
def test_a_page_header_that_is_no_page_url_is_a_400(default_agent, page_url):
    response = ChatKitBrowser().client.post(
        "/api/chatkit",
        json.dumps({"type": "threads.create", "params": {"input": user_input("hello")}}),
        content_type="application/json",
        HTTP_X_PAGE_URL=page_url,
    )

    assert response.status_code == 400
    assert "X-Page-URL" in response.json()["error"]
    assert not ChatKitThread.objects.exists()


def test_an_unreadable_instructions_file_is_a_503(default_agent, settings, tmp_path):
    settings.CHATKIT_AGENT_INSTRUCTIONS_FILE = str(tmp_path / "missing.md")

    response = ChatKitBrowser().post("threads.create", input=user_input("hello"))

    assert response.status_code == 503
    assert "CHATKIT_AGENT_INSTRUCTIONS_FILE" in response.json()["error"]
    assert not ChatKitThread.objects.exists()


def test_openai_refusing_the_key_is_an_error_event_and_the_message_is_kept(default_agent, settings):
    settings.OPENAI_API_KEY = "sk-wrong-key"

    events = ChatKitBrowser().say("hello")

    assert {"type": "error", "code": "stream.error", "allow_retry": True} in events
    assert "sk-wrong-key" not in str(events)
    thread = ChatKitThread.objects.get(pk=thread_id_of(events))
    assert list(thread.items.values_list("type", flat=True)) == ["user_message"]
