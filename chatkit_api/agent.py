"""The agent that answers in self-hosted mode: the site's own, named by CHATKIT_AGENT, or the default.

An Agent Builder workflow exported as Agents SDK code defines its agents as `Agent` objects
and chains them in a `run_workflow` function. Here CHATKIT_AGENT names the agent the
conversation starts with; the chaining becomes its handoffs and guardrails (see
`examples/agent_builder_export.py` and docs/self-hosted.md, "Moving from Agent Builder"). The export's
`run_workflow` is not called: it runs one turn without the thread's history, without
streaming, and with a client of its own, where the ChatKit server streams every run of the
agent over the whole thread and stores what it says.
"""

import importlib
import inspect
import logging
from pathlib import Path
from typing import Any

from agents import Agent, RunContextWrapper
from django.conf import settings

from chatkit_api.exceptions import ServiceError

logger = logging.getLogger(__name__)

DEFAULT_INSTRUCTIONS = """\
You are the assistant on this business's website. Answer visitors' questions briefly, politely
and in the visitor's language. Do not invent prices, dates or availability you were not given.
When a visitor wants a quote or a booking, ask for their name, an email address or phone number,
their vehicle and what they need, so that the team can get back to them."""


class AgentNotConfigured(ServiceError):
    status_code = 503


def workflow_state(context: RunContextWrapper[Any]) -> dict[str, str]:
    """The state variables a managed session gave the workflow, for instructions and tools:
    `locale` (the browser's language, default `en`) and `page_url` (the page the chat is on,
    or empty), read from the widget's request.

    `context` is what the Agents SDK hands dynamic instructions and tools.
    """
    request = context.context.request_context
    return {"locale": request.locale, "page_url": request.page_url}


def _instructions() -> str:
    path = settings.CHATKIT_AGENT_INSTRUCTIONS_FILE
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            logger.error("CHATKIT_AGENT_INSTRUCTIONS_FILE %s cannot be read: %s", path, exc)
            raise AgentNotConfigured(
                "The service is not configured: CHATKIT_AGENT_INSTRUCTIONS_FILE cannot be read."
            ) from exc
    return settings.CHATKIT_AGENT_INSTRUCTIONS or DEFAULT_INSTRUCTIONS


def default_agent() -> Agent:
    """A plain chat agent whose model and instructions come from settings, told the visitor's
    language and page as a managed workflow was."""
    base = _instructions()

    def instructions(context: RunContextWrapper[Any], agent: Agent) -> str:
        state = workflow_state(context)
        lines = [base, "", f"The visitor's browser language: {state['locale']}."]
        if state["page_url"]:
            lines.append(f"The page the visitor is chatting from: {state['page_url']}")
        return "\n".join(lines)

    model = settings.CHATKIT_AGENT_MODEL or None
    return Agent(name="Website assistant", instructions=instructions, model=model)


def _agents_in(module: Any) -> list[str]:
    return [name for name, value in vars(module).items() if isinstance(value, Agent)]


def _not_an_agent(path: str, module: Any, target: Any) -> AgentNotConfigured:
    if inspect.ismodule(target):
        what = "a module"
    elif callable(target):
        what = "a workflow function such as an export's run_workflow"
    else:
        what = f"a {type(target).__name__}"
    agents = _agents_in(target if inspect.ismodule(target) else module)
    logger.error(
        "CHATKIT_AGENT %r names %s, not an Agent. Name the agent the conversation starts with%s.",
        path,
        what,
        f" (agents there: {', '.join(agents)})" if agents else "",
    )
    return AgentNotConfigured(
        f"The service is not configured: CHATKIT_AGENT names {what}, not an Agent (module:agent)."
    )


def _agent_factory(target: Any) -> bool:
    """A plain function called without arguments (a module, a workflow or any value is not)."""
    return (
        callable(target)
        and not inspect.ismodule(target)
        and not inspect.iscoroutinefunction(target)
        and not _takes_arguments(target)
    )


def _takes_arguments(function: Any) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(parameter.default is inspect.Parameter.empty for parameter in parameters)


def agent_load() -> Agent:
    """The agent CHATKIT_AGENT names: an Agent, or a function without arguments returning one."""
    path = settings.CHATKIT_AGENT
    module_name, separator, attribute = path.partition(":")
    if not separator:
        module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        target = getattr(module, attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        logger.exception("CHATKIT_AGENT %r cannot be imported", path)
        raise AgentNotConfigured(
            "The service is not configured: CHATKIT_AGENT cannot be imported (expected module:attribute)."
        ) from exc
    if isinstance(target, Agent):
        return target
    if not _agent_factory(target):
        raise _not_an_agent(path, module, target)
    agent = target()
    if not isinstance(agent, Agent):
        raise _not_an_agent(path, module, agent)
    return agent
