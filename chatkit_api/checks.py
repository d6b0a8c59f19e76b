"""`manage.py check --deploy`: in self-hosted mode, the agent CHATKIT_AGENT names must load.

Run before the first visitor does: a wrong module path or a `run_workflow` named instead of
an agent would otherwise only show as a 503 on the first message.
"""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, register


@register("chatkit", deploy=True)
def chatkit_agent_loads(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    if settings.CHATKIT_MODE != "self_hosted":
        return []
    # Imported here: the Agents SDK is for self-hosted mode, and only this check needs it.
    from chatkit_api.agent import AgentNotConfigured, agent_load

    try:
        agent_load()
    except AgentNotConfigured as exc:
        return [
            Error(
                exc.message,
                hint="Set CHATKIT_AGENT to module:agent, the agent the conversation starts with "
                "(the log above names the module's agents).",
                id="chatkit_api.E001",
            )
        ]
    return []
