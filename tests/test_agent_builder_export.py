"""The example Agent Builder export (examples/agent_builder_export.py) served through
`POST /api/chatkit`: its model calls go over HTTP to the fake OpenAI API, which answers with
scripted turns, so handoffs, model settings and the guardrail run in the real Agents SDK."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from chatkit_api.models import ChatKitThread
from examples.agent_builder_export import booking_agent, quote_agent
from tests.chatkit_protocol import ChatKitBrowser, assistant_texts, done_items, thread_id_of, user_input

pytestmark = pytest.mark.django_db


@pytest.fixture
def exported_workflow(self_hosted, settings):
    settings.CHATKIT_AGENT = "examples.agent_builder_export:triage_agent"


def test_the_triage_agent_hands_the_visitor_to_the_quote_agent(exported_workflow, fake_chatkit):
    fake_chatkit.model_turns.extend([("transfer_to_quote_agent", {}), "Front pads are £89 fitted."])
    browser = ChatKitBrowser(
        HTTP_ACCEPT_LANGUAGE="en-GB,en;q=0.9", HTTP_REFERER="https://shop.example/brakes"
    )

    events = browser.say("How much are front pads?")

    assert assistant_texts(events) == ["Front pads are £89 fitted."]
    triage, quote = fake_chatkit.requests_to("POST", "/v1/responses")
    assert triage.body["model"] == "gpt-5.4-mini"
    assert triage.body["reasoning"] == {"effort": "minimal"}
    assert triage.body["store"] is True
    assert "locale en-GB" in triage.body["instructions"]
    assert "https://shop.example/brakes" in triage.body["instructions"]
    assert {tool["name"] for tool in triage.body["tools"]} == {
        "transfer_to_quote_agent",
        "transfer_to_booking_agent",
    }
    assert quote.body["instructions"] == quote_agent.instructions
    assert quote.body["reasoning"] == {"effort": "low"}
    assert quote.body["input"][-1]["type"] == "function_call_output"
    stored = ChatKitThread.objects.get(pk=thread_id_of(events)).items.values_list("type", flat=True)
    assert list(stored) == ["user_message", "assistant_message"]


def test_the_next_message_starts_again_at_the_triage_agent_with_the_history(exported_workflow, fake_chatkit):
    fake_chatkit.model_turns.extend(
        [
            ("transfer_to_quote_agent", {}),
            "Which car?",
            ("transfer_to_booking_agent", {}),
            "Which day suits you?",
        ]
    )
    browser = ChatKitBrowser()
    thread_id = thread_id_of(browser.say("A quote for pads, please"))

    events = browser.say("A Golf. Can I come on Tuesday?", thread_id)

    assert assistant_texts(events) == ["Which day suits you?"]
    requests = fake_chatkit.requests_to("POST", "/v1/responses")
    assert [request.body["instructions"] == booking_agent.instructions for request in requests] == [
        False,
        False,
        False,
        True,
    ]
    texts = [
        part["text"]
        for item in requests[2].body["input"]
        if item.get("role") in ("user", "assistant")
        for part in item["content"]
    ]
    assert texts == ["A quote for pads, please", "Which car?", "A Golf. Can I come on Tuesday?"]


def test_the_guardrail_answers_before_any_model_sees_a_card_number(exported_workflow, fake_chatkit):
    browser = ChatKitBrowser()

    events = browser.say("Can I pay now? My card is 4242 4242 4242 4242")

    [answer] = assistant_texts(events)
    assert answer.startswith("Please don't share card details in the chat")
    assert not fake_chatkit.requests_to("POST", "/v1/responses")
    assert [item["type"] for item in done_items(events)] == ["user_message", "assistant_message"]


def test_naming_the_workflow_function_instead_of_an_agent_is_a_503(self_hosted, settings, caplog):
    settings.CHATKIT_AGENT = "tests.chatkit_agents:run_workflow"

    response = ChatKitBrowser().post("threads.create", input=user_input("hello"))

    assert response.status_code == 503
    assert "workflow function" in response.json()["error"]
    assert "agents there: agent_instance" in caplog.text
    assert not ChatKitThread.objects.exists()


@pytest.mark.parametrize(
    ("agent", "problem"),
    [
        ("examples.agent_builder_export:triage_agent", None),
        ("tests.chatkit_agents:run_workflow", "names a workflow function"),
        ("tests.nowhere:agent", "cannot be imported"),
    ],
)
def test_the_deploy_check_loads_the_agent(self_hosted, settings, agent, problem):
    settings.CHATKIT_AGENT = agent
    out = StringIO()

    if problem is None:
        call_command("check", deploy=True, tags=["chatkit"], stdout=out)
        assert "no issues" in out.getvalue()
        return
    with pytest.raises(SystemCheckError) as failed:
        call_command("check", deploy=True, tags=["chatkit"], stdout=out)
    assert "chatkit_api.E001" in str(failed.value)
    assert problem in str(failed.value)


def test_the_deploy_check_leaves_managed_mode_alone(fake_chatkit, settings):
    settings.CHATKIT_AGENT = "tests.nowhere:agent"
    out = StringIO()

    call_command("check", deploy=True, tags=["chatkit"], stdout=out)

    assert "no issues" in out.getvalue()
