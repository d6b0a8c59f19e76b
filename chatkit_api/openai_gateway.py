"""The one wrapper around the OpenAI SDK: ChatKit sessions, thread lookup, thread items,
and the async client the self-hosted agent's model calls go through.

SDK exceptions never leave this module: they become ThreadNotFound or UpstreamError with
messages that are safe to return (no API key, no raw upstream body).

The ChatKit endpoints are called through the SDK client's generic request methods rather
than `client.beta.chatkit`: touching `client.beta` imports every beta resource and its
types, which costs more cold start than `import openai` itself. The generic methods keep
the SDK's authentication, retries, timeouts and error types. Replies are read as JSON:
a session needs two fields, and a thread item of a type the SDK does not know yet must
still reach the mail.
"""

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import openai
from django.conf import settings

from chatkit_api.exceptions import NotConfigured, ThreadNotFound, UpstreamError

logger = logging.getLogger(__name__)

# The API's maximum page size for thread items.
ITEMS_PAGE_SIZE = 100
_CHATKIT_BETA_HEADERS = {"OpenAI-Beta": "chatkit_beta=v1"}


@dataclass(frozen=True)
class ChatKitSession:
    client_secret: str
    expires_at: int | None


@functools.lru_cache(maxsize=4)
def _build_client(api_key: str, base_url: str | None, timeout: float, max_retries: int) -> openai.OpenAI:
    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)


def _client() -> openai.OpenAI:
    if not settings.OPENAI_API_KEY:
        raise NotConfigured(["OPENAI_API_KEY"])
    return _build_client(
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL,
        float(settings.OPENAI_TIMEOUT_SECONDS),
        settings.OPENAI_MAX_RETRIES,
    )


def async_client() -> openai.AsyncOpenAI:
    """A new async client for the self-hosted agent, built from the same settings.

    Not cached: each request runs its own event loop, and an async client's connections
    belong to the loop that opened them. A model's answer can take a while to start, so
    reads wait CHATKIT_AGENT_TIMEOUT_SECONDS.
    """
    if not settings.OPENAI_API_KEY:
        raise NotConfigured(["OPENAI_API_KEY"])
    return openai.AsyncOpenAI(
        api_key=settings.OPENAI_API_KEY,
        base_url=settings.OPENAI_BASE_URL,
        timeout=float(settings.CHATKIT_AGENT_TIMEOUT_SECONDS),
        max_retries=settings.OPENAI_MAX_RETRIES,
    )


def _upstream_error(action: str, exc: openai.OpenAIError) -> UpstreamError:
    if isinstance(exc, openai.APITimeoutError):
        reason = "timed out"
    elif isinstance(exc, openai.APIConnectionError):
        reason = "could not be reached"
    elif isinstance(exc, openai.AuthenticationError):
        reason = "rejected the API key (HTTP 401)"
    elif isinstance(exc, openai.APIStatusError):
        reason = f"answered HTTP {exc.status_code}"
    else:
        reason = "failed"
    request_id = getattr(exc, "request_id", None)
    # The SDK's message can quote the upstream body; it goes to the log, not to the caller.
    logger.warning("OpenAI %s %s (request id %s): %s", action, reason, request_id, exc)
    return UpstreamError(f"OpenAI {reason} while {action}. Try again later.")


def _unreadable_reply(what: str, exc: Exception) -> UpstreamError:
    logger.warning("OpenAI returned %s that could not be read: %r", what, exc)
    return UpstreamError("OpenAI returned an unreadable answer. Try again later.")


def _chatkit_request(method: str, path: str, *, body: Any = None, params: Any = None) -> dict[str, Any]:
    options: Any = {"headers": _CHATKIT_BETA_HEADERS, "params": params or {}}
    client = _client()
    if method == "post":
        reply = client.post(path, cast_to=object, body=body, options=options)
    else:
        reply = client.get(path, cast_to=object, options=options)
    if not isinstance(reply, dict):
        raise ValueError(f"expected a JSON object, got {type(reply).__name__}")
    return reply


def session_create(
    *,
    user: str,
    workflow_id: str,
    workflow_version: str,
    state_variables: dict[str, Any],
    expires_after_seconds: int,
    max_requests_per_minute: int,
) -> ChatKitSession:
    workflow: dict[str, Any] = {"id": workflow_id, "state_variables": state_variables}
    if workflow_version:
        workflow["version"] = workflow_version
    try:
        session = _chatkit_request(
            "post",
            "/chatkit/sessions",
            body={
                "user": user,
                "workflow": workflow,
                "expires_after": {"anchor": "created_at", "seconds": expires_after_seconds},
                "rate_limits": {"max_requests_per_1_minute": max_requests_per_minute},
            },
        )
        return ChatKitSession(client_secret=session["client_secret"], expires_at=session.get("expires_at"))
    except openai.OpenAIError as exc:
        raise _upstream_error("creating a ChatKit session", exc) from exc
    except (KeyError, ValueError) as exc:
        raise _unreadable_reply("a ChatKit session", exc) from exc


def _thread_path(thread_id: str) -> str:
    return f"/chatkit/threads/{quote(thread_id, safe='')}"


def thread_owner(thread_id: str) -> str:
    """The ChatKit `user` that owns the thread; ThreadNotFound if there is no such thread."""
    try:
        return str(_chatkit_request("get", _thread_path(thread_id))["user"])
    except openai.NotFoundError as exc:
        raise ThreadNotFound() from exc
    except openai.OpenAIError as exc:
        raise _upstream_error("looking up the thread", exc) from exc
    except (KeyError, ValueError) as exc:
        raise _unreadable_reply("a thread", exc) from exc


def thread_items(thread_id: str) -> Iterator[dict[str, Any]]:
    """Every item of the thread, oldest first, following `has_more`/`after` to the end."""
    path = _thread_path(thread_id) + "/items"
    after: str | None = None
    while True:
        params: dict[str, Any] = {"order": "asc", "limit": ITEMS_PAGE_SIZE}
        if after:
            params["after"] = after
        try:
            page = _chatkit_request("get", path, params=params)
        except openai.NotFoundError as exc:
            raise ThreadNotFound() from exc
        except openai.OpenAIError as exc:
            raise _upstream_error("reading the thread's messages", exc) from exc
        except ValueError as exc:
            raise _unreadable_reply("a page of thread items", exc) from exc
        data = page.get("data") or []
        yield from data
        after = page.get("last_id") or (data[-1].get("id") if data else None)
        if not page.get("has_more") or not after:
            return
