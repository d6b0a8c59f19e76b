"""The one wrapper around the OpenAI SDK: ChatKit sessions, thread lookup, thread items.

SDK exceptions never leave this module: they become ThreadNotFound or UpstreamError with
messages that are safe to return (no API key, no raw upstream body).
"""

import functools
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
from django.conf import settings

from chatkit_api.exceptions import NotConfigured, ThreadNotFound, UpstreamError

logger = logging.getLogger(__name__)

# The API's maximum page size for thread items.
ITEMS_PAGE_SIZE = 100


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
        session = _client().beta.chatkit.sessions.create(
            user=user,
            workflow=workflow,  # type: ignore[arg-type]
            expires_after={"anchor": "created_at", "seconds": expires_after_seconds},
            rate_limits={"max_requests_per_1_minute": max_requests_per_minute},
        )
    except openai.OpenAIError as exc:
        raise _upstream_error("creating a ChatKit session", exc) from exc
    return ChatKitSession(client_secret=session.client_secret, expires_at=session.expires_at)


def thread_owner(thread_id: str) -> str:
    """The ChatKit `user` that owns the thread; ThreadNotFound if there is no such thread."""
    try:
        thread = _client().beta.chatkit.threads.retrieve(thread_id)
    except openai.NotFoundError as exc:
        raise ThreadNotFound() from exc
    except openai.OpenAIError as exc:
        raise _upstream_error("looking up the thread", exc) from exc
    return thread.user


def thread_items(thread_id: str) -> Iterator[dict[str, Any]]:
    """Every item of the thread, oldest first, following `has_more`/`after` to the end.

    Items are yielded as the API's JSON objects rather than SDK models: the renderer reads
    a handful of fields, and a type the SDK does not know yet must still reach the mail.
    """
    client = _client()
    after: str | None = None
    while True:
        try:
            raw = client.beta.chatkit.threads.with_raw_response.list_items(
                thread_id,
                order="asc",
                limit=ITEMS_PAGE_SIZE,
                after=after or openai.omit,
            )
            page = json.loads(raw.content)
        except openai.NotFoundError as exc:
            raise ThreadNotFound() from exc
        except openai.OpenAIError as exc:
            raise _upstream_error("reading the thread's messages", exc) from exc
        except ValueError as exc:
            logger.warning("OpenAI returned a thread items page that is not JSON: %s", exc)
            raise UpstreamError("OpenAI returned an unreadable answer. Try again later.") from exc
        data = page.get("data") or []
        yield from data
        after = page.get("last_id") or (data[-1].get("id") if data else None)
        if not page.get("has_more") or not after:
            return
