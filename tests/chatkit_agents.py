"""Agents for the self-hosted tests, named by CHATKIT_AGENT as a site's own agent would be."""

import asyncio

from agents import Agent, RunContextWrapper, StopAtTools, function_tool
from chatkit.agents import AgentContext, ClientToolCall

from tests.fake_model import ScriptedModel

MODEL = ScriptedModel()
INSTRUCTIONS = "You answer questions about brake services."


@function_tool
async def open_booking_form(ctx: RunContextWrapper[AgentContext], service: str) -> None:
    """Show the visitor the page's booking form for a service."""
    # A client tool: the widget runs it in the browser and sends its result back.
    ctx.context.client_tool_call = ClientToolCall(name="open_booking_form", arguments={"service": service})


def scripted_agent() -> Agent:
    return Agent(
        name="Brake shop assistant",
        instructions=INSTRUCTIONS,
        model=MODEL,
        tools=[open_booking_form],
        tool_use_behavior=StopAtTools(stop_at_tool_names=["open_booking_form"]),
    )


agent_instance = Agent(name="Ready-made agent", instructions=INSTRUCTIONS, model=MODEL)

not_an_agent = "a string"


async def run_workflow(workflow_input: object) -> dict[str, str]:
    """Shaped like the entry point of an Agent Builder export, which CHATKIT_AGENT must not name."""
    return {"output_text": ""}


@function_tool
async def check_calendar(day: str) -> str:
    """Look up free slots on a day; this one never answers, like a backend that hangs."""
    await asyncio.Event().wait()
    return "never"


def calendar_agent() -> Agent:
    return Agent(name="Booking assistant", instructions=INSTRUCTIONS, model=MODEL, tools=[check_calendar])
