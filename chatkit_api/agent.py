"""The agent that answers in self-hosted mode: the site's own, named by CHATKIT_AGENT, or the default.

An Agent Builder workflow exported as Agents SDK code defines an `Agent`; pointing
CHATKIT_AGENT at it ("mysite.agents:support_agent") is all it takes to serve it here.
"""

import importlib
import logging
from pathlib import Path

from agents import Agent
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
    """A plain chat agent whose model and instructions come from settings."""
    return Agent(
        name="Website assistant",
        instructions=_instructions(),
        model=settings.CHATKIT_AGENT_MODEL or None,
    )


def agent_load() -> Agent:
    """The agent CHATKIT_AGENT names: an Agent, or a function without arguments returning one."""
    path = settings.CHATKIT_AGENT
    module_name, separator, attribute = path.partition(":")
    if not separator:
        module_name, _, attribute = path.rpartition(".")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        logger.exception("CHATKIT_AGENT %r cannot be imported", path)
        raise AgentNotConfigured(
            "The service is not configured: CHATKIT_AGENT cannot be imported (expected module:attribute)."
        ) from exc
    agent = target if isinstance(target, Agent) else target() if callable(target) else None
    if not isinstance(agent, Agent):
        raise AgentNotConfigured("The service is not configured: CHATKIT_AGENT does not name an Agent.")
    return agent
