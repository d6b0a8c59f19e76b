"""The one wrapper around the OpenAI SDK: ChatKit sessions, managed threads and their items,
the async client the self-hosted agent's model calls go through, and self-hosted thread titles.

SDK exceptions never leave this module: they become ThreadNotFound or UpstreamError with
messages that are safe to return (no API key, no raw upstream body).

The ChatKit endpoints are called through the SDK client's generic request methods rather
than `client.beta.chatkit`: touching `client.beta` imports every beta resource and its
types, which costs more cold start than `import openai` itself. The generic methods keep
the SDK's authentication, timeouts and error types. Replies are read as JSON: a session
needs two fields, and a thread item of a type the SDK does not know yet must still reach
the mail.

The ChatKit calls are retried here rather than by the SDK, by the SDK's rules, because only
here is the request's time budget known (chatkit_api.time_budget): an attempt never outlasts
it, and a retry that could not start in time is not made. The SDK would wait out a
Retry-After of up to a minute, and give each attempt the whole OPENAI_TIMEOUT_SECONDS.
"""

import asyncio
import functools
import itertools
import logging
import random
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import httpx2
import openai
from django.conf import settings

from chatkit_api.exceptions import ManagedChatKitGone, NotConfigured, ThreadNotFound, UpstreamError
from chatkit_api.time_budget import time_left

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
def _build_client(api_key: str, base_url: str) -> openai.OpenAI:
    # Each request says its own timeout, and is retried by _chatkit_request.
    return openai.OpenAI(api_key=api_key, base_url=base_url, max_retries=0)


def _client() -> openai.OpenAI:
    """The client built from settings."""
    if not settings.OPENAI_API_KEY:
        raise NotConfigured(["OPENAI_API_KEY"])
    return _build_client(settings.OPENAI_API_KEY, settings.OPENAI_BASE_URL)


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


async def thread_title_create(*, model: str, instructions: str, conversation: str) -> str:
    """A thread's title, written by `model` following `instructions` from `conversation`.

    One attempt, no retry (a title is not worth the wait), within OPENAI_TIMEOUT_SECONDS and
    what is left of the request's time budget; not stored at OpenAI. UpstreamError when
    OpenAI fails, times out or answers nothing.
    """
    try:
        client = async_client().with_options(timeout=_attempt_timeout(), max_retries=0)
        response = await client.responses.create(
            model=model, instructions=instructions, input=conversation, store=False
        )
    except openai.OpenAIError as exc:
        raise _upstream_error("writing a thread title", exc) from exc
    if not response.output_text.strip():
        raise _unreadable_reply("a thread title", ValueError(f"no text (status {response.status})"))
    return response.output_text


class _OutOfTime(openai.OpenAIError):
    """No time was left in the request's budget for an attempt."""


def _upstream_error(action: str, exc: openai.OpenAIError) -> UpstreamError:
    if isinstance(exc, (openai.APITimeoutError, _OutOfTime)):
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


# Statuses worth another attempt, as the SDK has them: a request timeout, a conflict, a rate
# limit, and the server's own errors.
_RETRIED_STATUSES = {408, 409, 429}
# The longest Retry-After the SDK waits out; past it, it does not retry.
_LONGEST_RETRY_AFTER_SECONDS = 60


def _retry_after(exc: openai.APIStatusError) -> float | None:
    """The wait the reply asks for, in seconds, if it asks for one."""
    headers = exc.response.headers
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None


def _retry_wait(exc: openai.OpenAIError, retries_taken: int) -> float | None:
    """Seconds to wait before another attempt after `exc`; None when it is not worth one.

    By the SDK's rules: a connection that failed or timed out is tried again, and so is a reply
    with a status in _RETRIED_STATUSES or 500 and above, unless it says otherwise
    (x-should-retry). The wait is the reply's Retry-After, else half a second doubled with
    each retry, at most 8 s, less up to a quarter (so that clients do not retry in step).
    """
    if isinstance(exc, openai.APIStatusError):
        should_retry = exc.response.headers.get("x-should-retry")
        if should_retry == "false":
            return None
        if should_retry != "true" and exc.status_code not in _RETRIED_STATUSES and exc.status_code < 500:
            return None
        asked = _retry_after(exc)
        if asked is not None and asked > 0:
            return asked if asked <= _LONGEST_RETRY_AFTER_SECONDS else None
    elif not isinstance(exc, openai.APIConnectionError):
        return None
    return min(0.5 * 2**retries_taken, 8.0) * (1 - 0.25 * random.random())  # noqa: S311 - jitter


def _attempt_timeout() -> float:
    """What one attempt may take: OPENAI_TIMEOUT_SECONDS, within what is left of the budget."""
    left = time_left()
    if left is None:
        return float(settings.OPENAI_TIMEOUT_SECONDS)
    if left <= 0:
        raise _OutOfTime()
    return min(float(settings.OPENAI_TIMEOUT_SECONDS), left)


def _chatkit_request(
    method: str, path: str, *, body: Any = None, params: Any = None, max_retries: int | None = None
) -> dict[str, Any]:
    """One ChatKit call, retried up to `max_retries` times (default OPENAI_MAX_RETRIES; a long
    command can afford to wait out a rate limit, a visitor's request cannot) while the
    request's time budget lasts."""
    retries = settings.OPENAI_MAX_RETRIES if max_retries is None else max_retries
    client = _client()
    options: Any = {"headers": _CHATKIT_BETA_HEADERS, "params": params or {}}
    for retries_taken in itertools.count():
        options["timeout"] = _attempt_timeout()
        try:
            if method == "post":
                reply = client.post(path, cast_to=object, body=body, options=options)
            else:
                reply = client.get(path, cast_to=object, options=options)
            break
        except openai.OpenAIError as exc:
            wait = _retry_wait(exc, retries_taken) if retries_taken < retries else None
            left = time_left()
            if wait is None or (left is not None and wait >= left):
                raise
            logger.info("OpenAI %s %s failed (%s); retrying in %.1f s", method.upper(), path, exc, wait)
            time.sleep(wait)
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
