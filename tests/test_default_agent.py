"""The shipped agent, answered by the real Agents SDK model over HTTP (the fake OpenAI API)."""

import pytest

from chatkit_api.agent import DEFAULT_INSTRUCTIONS
from chatkit_api.models import ChatKitThread
from tests.chatkit_protocol import ChatKitBrowser, assistant_texts, thread_id_of, user_input
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
    assert first.body["instructions"] == "You work at Brakes R Us.\nBe brief."
    assert [item["role"] for item in second.body["input"]] == ["user", "assistant", "user"]
    assert ChatKitThread.objects.get().items.count() == 4


def test_inline_instructions_and_the_built_in_ones(default_agent, fake_chatkit, settings):
    ChatKitBrowser().say("hello")
    settings.CHATKIT_AGENT_INSTRUCTIONS = "Answer in French."
    ChatKitBrowser().say("bonjour")

    built_in, inline = fake_chatkit.requests_to("POST", "/v1/responses")
    assert built_in.body["instructions"] == DEFAULT_INSTRUCTIONS
    assert inline.body["instructions"] == "Answer in French."


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
