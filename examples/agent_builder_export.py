"""An Agent Builder workflow as its Python code export defines it, ready to serve here with

    CHATKIT_AGENT=examples.agent_builder_export:triage_agent

The workflow: a triage agent greets the visitor and routes price questions to a quote agent
and appointments to a booking agent; a guardrail node stops card numbers before any model
sees them. Agent Builder exports each agent node as an `Agent` with its model and
`ModelSettings`, and a `run_workflow(workflow_input)` that runs the nodes in order, branching
on the triage agent's answer. Three edits make such an export servable by this service:

1. The branches of `run_workflow` become `handoffs` of the first agent, whose model picks the
   branch itself; a guardrail node becomes an `input_guardrail` of that agent. `run_workflow`
   is then deleted: the ChatKit server runs the first agent over the whole thread and streams
   it, which the export's one-turn function cannot do.
2. `{{state.locale}}` and `{{state.page_url}}` in instructions become `workflow_state(context)`
   in dynamic instructions: the widget's request carries them (see README).
3. CHATKIT_AGENT names the first agent.
"""

import re
from typing import Any

from agents import (
    Agent,
    GuardrailFunctionOutput,
    ModelSettings,
    RunContextWrapper,
    TResponseInputItem,
    input_guardrail,
)
from openai.types.shared.reasoning import Reasoning

from chatkit_api.agent import workflow_state

MODEL = "gpt-5.4-mini"
# 13 to 19 digits, with or without spaces or dashes between groups.
CARD_NUMBER = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")


def _latest_visitor_text(conversation: str | list[TResponseInputItem]) -> str:
    if isinstance(conversation, str):
        return conversation
    for item in reversed(conversation):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            parts = content if isinstance(content, list) else []
            return " ".join(str(part.get("text", "")) for part in parts if isinstance(part, dict))
    return ""


# Not run in parallel with the model: a tripped guardrail then stops the run before any model
# call, and the visitor reads `output_info` as the answer.
@input_guardrail(run_in_parallel=False)
async def no_card_numbers(
    context: RunContextWrapper[Any], agent: Agent, conversation: str | list[TResponseInputItem]
) -> GuardrailFunctionOutput:
    """Agent Builder's PII guardrail node, as a check of the visitor's latest message."""
    tripped = bool(CARD_NUMBER.search(_latest_visitor_text(conversation)))
    return GuardrailFunctionOutput(
        output_info=(
            "Please don't share card details in the chat: the team takes payment securely when you book."
        )
        if tripped
        else None,
        tripwire_triggered=tripped,
    )


quote_agent = Agent(
    name="Quote agent",
    handoff_description="Prices and quotes for brake and tyre work.",
    instructions=(
        "You give prices for brake and tyre work: front pads £89 fitted, discs and pads £189 "
        "fitted, a tyre from £65. Ask for the vehicle when the price depends on it. Offer to book."
    ),
    model=MODEL,
    model_settings=ModelSettings(store=True, reasoning=Reasoning(effort="low")),
)

booking_agent = Agent(
    name="Booking agent",
    handoff_description="Appointments: days, times and what to bring.",
    instructions=(
        "You book appointments, Monday to Saturday, 8:00 to 17:00. Ask for the visitor's name, "
        "phone or email, vehicle and a preferred day; never promise a time, the team confirms it."
    ),
    model=MODEL,
    model_settings=ModelSettings(store=True, reasoning=Reasoning(effort="low")),
)


def triage_instructions(context: RunContextWrapper[Any], agent: Agent) -> str:
    state = workflow_state(context)
    return (
        "You greet visitors of a brake and tyre workshop and find out what they need. Hand price "
        "questions to the quote agent and appointments to the booking agent; answer anything else "
        f"briefly yourself. Answer in the language of the locale {state['locale']}. "
        f"The visitor is on this page: {state['page_url'] or 'unknown'}."
    )


triage_agent = Agent(
    name="Triage agent",
    instructions=triage_instructions,
    model=MODEL,
    model_settings=ModelSettings(store=True, reasoning=Reasoning(effort="minimal")),
    handoffs=[quote_agent, booking_agent],
    input_guardrails=[no_card_numbers],
)
