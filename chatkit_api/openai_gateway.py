"""The one wrapper around the OpenAI SDK: ChatKit sessions, managed threads and their items,
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

import asyncio
import functools
import logging
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import httpx2
import openai
from django.conf import settings

from chatkit_api.exceptions import ManagedChatKitGone, NotConfigured, ThreadNotFound, UpstreamError

logger = logging.getLogger(__name__)

# OpenAI shuts down Agent Builder, which runs managed ChatKit workflows, on this day.
AGENT_BUILDER_SHUTDOWN = date(2026, 11, 30)
# The API's maximum page size for threads and thread items.
PAGE_SIZE = 100
_CHATKIT_BETA_HEADERS = {"OpenAI-Beta": "chatkit_beta=v1"}


@dataclass(frozen=True)
class ChatKitSession:
    client_secret: str
    expires_at: int | None


@functools.lru_cache(maxsize=4)
def _build_client(api_key: str, base_url: str, timeout: float, max_retries: int) -> openai.OpenAI:
    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries)


def _client(max_retries: int | None = None) -> openai.OpenAI:
    """The client built from settings; `max_retries` overrides OPENAI_MAX_RETRIES (a long
    command can afford to wait out a rate limit, a visitor's request cannot)."""
    if not settings.OPENAI_API_KEY:
        raise NotConfigured(["OPENAI_API_KEY"])
    return _build_client(
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL,
        float(settings.OPENAI_TIMEOUT_SECONDS),
        settings.OPENAI_MAX_RETRIES if max_retries is None else max_retries,
    )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # The certificate store is read once per process: building it is most of what a new
    # client costs (tens of milliseconds on every answer otherwise).
    return httpx2.create_ssl_context()


# The self-hosted agent's clients, one per event loop, with the settings each was built from.
_async_clients: dict[asyncio.AbstractEventLoop, tuple[tuple[Any, ...], openai.AsyncOpenAI]] = {}


def async_client() -> openai.AsyncOpenAI:
    """The self-hosted agent's async client for the running event loop, from the same settings.

    Under the ASGI server every answer runs on the server's one loop, and they share a client
    and its open connections: a new connection to OpenAI costs each answer a TLS handshake. A
    client's connections belong to the loop that opened them; under WSGI each request runs a
    loop of its own, and closes its client with async_client_close() before the loop ends. The
    answer's own deadline (CHATKIT_AGENT_TIMEOUT_SECONDS) bounds every read.
    """
    if not settings.OPENAI_API_KEY:
        raise NotConfigured(["OPENAI_API_KEY"])
    options = (
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL,
        float(settings.CHATKIT_AGENT_TIMEOUT_SECONDS),
        settings.OPENAI_MAX_RETRIES,
    )
    for ended in [loop for loop in _async_clients if loop.is_closed()]:
        del _async_clients[ended]
    loop = asyncio.get_running_loop()
    built = _async_clients.get(loop)
    if built is None or built[0] != options:
        api_key, base_url, timeout, max_retries = options
        client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            http_client=openai.DefaultAsyncHttpxClient(verify=_tls_context()),
        )
        built = _async_clients[loop] = (options, client)
    return built[1]


async def async_client_close() -> None:
    """Close the running loop's client, if it has one: before a request's own loop ends."""
    built = _async_clients.pop(asyncio.get_running_loop(), None)
    if built is not None:
        await built[1].close()


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
    status = exc.status_code if isinstance(exc, openai.APIStatusError) else None
    return UpstreamError(f"OpenAI {reason} while {action}. Try again later.", upstream_status=status)


def _unreadable_reply(what: str, exc: Exception) -> UpstreamError:
    logger.warning("OpenAI returned %s that could not be read: %r", what, exc)
    return UpstreamError("OpenAI returned an unreadable answer. Try again later.")


def _chatkit_request(
    method: str, path: str, *, body: Any = None, params: Any = None, max_retries: int | None = None
) -> dict[str, Any]:
    options: Any = {"headers": _CHATKIT_BETA_HEADERS, "params": params or {}}
    client = _client(max_retries)
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
        error = _upstream_error("creating a ChatKit session", exc)
        # A rejected key or a rate limit is this deployment's own; anything else after the
        # shutdown means there is no workflow left to run.
        if _agent_builder_shut_down() and error.upstream_status not in (401, 429):
            raise ManagedChatKitGone() from exc
        raise error from exc
    except (KeyError, ValueError) as exc:
        raise _unreadable_reply("a ChatKit session", exc) from exc


def _agent_builder_shut_down() -> bool:
    return datetime.now(UTC).date() >= AGENT_BUILDER_SHUTDOWN


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


def threads_list(*, user: str | None = None, max_retries: int | None = None) -> Iterator[dict[str, Any]]:
    """Every managed thread OpenAI keeps for this project (or for one ChatKit `user`), oldest
    first, as the API's thread objects.

    ManagedChatKitGone when the list endpoint is not there (404): Agent Builder has shut down.
    """
    after: str | None = None
    while True:
        params: dict[str, Any] = {"order": "asc", "limit": PAGE_SIZE}
        if user:
            params["user"] = user
        if after:
            params["after"] = after
        try:
            page = _chatkit_request("get", "/chatkit/threads", params=params, max_retries=max_retries)
        except openai.NotFoundError as exc:
            logger.warning("OpenAI answered 404 to the ChatKit thread list: %s", exc)
            raise ManagedChatKitGone() from exc
        except openai.OpenAIError as exc:
            raise _upstream_error("listing the ChatKit threads", exc) from exc
        except ValueError as exc:
            raise _unreadable_reply("a page of threads", exc) from exc
        data = page.get("data") or []
        yield from data
        after = page.get("last_id") or (data[-1].get("id") if data else None)
        if not page.get("has_more") or not after:
            return


def thread_item_pages(
    thread_id: str, *, after: str | None = None, order: str = "asc", max_retries: int | None = None
) -> Iterator[list[dict[str, Any]]]:
    """The thread's items a page (up to 100) at a time, from the one after `after` to the end."""
    path = _thread_path(thread_id) + "/items"
    while True:
        params: dict[str, Any] = {"order": order, "limit": PAGE_SIZE}
        if after:
            params["after"] = after
        try:
            page = _chatkit_request("get", path, params=params, max_retries=max_retries)
        except openai.NotFoundError as exc:
            raise ThreadNotFound() from exc
        except openai.OpenAIError as exc:
            raise _upstream_error("reading the thread's messages", exc) from exc
        except ValueError as exc:
            raise _unreadable_reply("a page of thread items", exc) from exc
        data = page.get("data") or []
        yield data
        after = page.get("last_id") or (data[-1].get("id") if data else None)
        if not page.get("has_more") or not after:
            return


def thread_items(thread_id: str) -> Iterator[dict[str, Any]]:
    """Every item of the thread, oldest first, following `has_more`/`after` to the end."""
    for page in thread_item_pages(thread_id):
        yield from page
