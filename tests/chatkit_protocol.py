"""A browser speaking the ChatKit protocol to `POST /api/chatkit`, as the widget does.

Request bodies are shaped like the ones ChatKit.js sends (`type`, `params`, `metadata`);
streamed answers are parsed from their server-sent events.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import async_to_sync
from django.http import HttpResponseBase
from django.test import AsyncClient, Client

from chatkit_api.chatkit_server import chatkit_loop_end

CHATKIT_URL = "/api/chatkit"
T = TypeVar("T")


def user_input(
    text: str, *, quoted_text: str | None = None, attachments: list[str] | None = None
) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": attachments or [],
        "quoted_text": quoted_text,
        "inference_options": {},
    }


def sse_events(body: bytes) -> list[dict[str, Any]]:
    events = []
    for block in body.decode().split("\n\n"):
        # A keep-alive comment is sent while the model is slow to answer (a loaded machine).
        if block.strip() and not block.startswith(":"):
            assert block.startswith("data: "), block
            events.append(json.loads(block.removeprefix("data: ")))
    return events


def _header_names(environ_style: dict[str, str]) -> dict[str, str]:
    """`HTTP_ACCEPT_LANGUAGE` as the header it stands for, `accept-language`."""
    return {
        name.removeprefix("HTTP_").replace("_", "-").lower(): value for name, value in environ_style.items()
    }


def body_of(response: HttpResponseBase) -> bytes:
    # A streamed answer was read whole by ChatKitBrowser, on the loop that produced it.
    return getattr(response, "streamed_body", None) or response.content  # type: ignore[attr-defined]


class ChatKitBrowser:
    """One visitor's browser: keeps the cookie /api/chatkit gives it.

    `/api/chatkit` is called as an ASGI server calls it (Django's async test client), so that
    answers stream as they do in production; `client` calls the other endpoints with the same
    cookies.
    """

    def __init__(self, **headers: str) -> None:
        # A browser sends the page's Origin with every POST; the widget's page is the API's.
        defaults = {"HTTP_ORIGIN": "http://testserver", **headers}
        self.client = Client(**defaults)
        self.headers = _header_names(defaults)
        self.async_client = AsyncClient()
        self.async_client.cookies = self.client.cookies

    def post_body(self, body: str | bytes, **headers: str) -> HttpResponseBase:
        """POST a raw body to /api/chatkit, with `HTTP_...` headers; a streamed reply is read whole."""

        async def read_whole(response: HttpResponseBase) -> None:
            chunks = [chunk async for chunk in response.streaming_content]  # type: ignore[attr-defined]
            response.streamed_body = b"".join(chunks)  # type: ignore[attr-defined]

        return self.post_reading(body, read_whole, **headers)[0]

    def post_reading(
        self, body: str | bytes, reader: Callable[[HttpResponseBase], Awaitable[T]], **headers: str
    ) -> tuple[HttpResponseBase, T | None]:
        """POST a raw body and give a streamed reply to `reader` while it is produced, on the
        event loop that produces it (as an ASGI server reads it)."""

        async def exchange() -> tuple[HttpResponseBase, T | None]:
            response = await self.async_client.post(
                CHATKIT_URL,
                body,
                content_type="application/json",
                headers={**self.headers, **_header_names(headers)},
            )
            try:
                return response, (await reader(response) if response.streaming else None)
            finally:
                # Unlike an ASGI server's, this loop ends with the request.
                await chatkit_loop_end()

        return async_to_sync(exchange)()

    def post(self, type: str, **params: Any) -> HttpResponseBase:
        return self.post_body(json.dumps({"type": type, "params": params, "metadata": {}}))

    def call(self, type: str, **params: Any) -> Any:
        """A request answered with JSON; fails the test on an error status."""
        response = self.post(type, **params)
        assert response.status_code == 200, body_of(response)
        assert response["Content-Type"] == "application/json"
        return json.loads(body_of(response))

    def stream(self, type: str, **params: Any) -> list[dict[str, Any]]:
        """A request answered with events; fails the test on an error status."""
        response = self.post(type, **params)
        assert response.status_code == 200, body_of(response)
        assert response["Content-Type"] == "text/event-stream"
        return sse_events(body_of(response))

    def say(self, text: str, thread_id: str | None = None) -> list[dict[str, Any]]:
        if thread_id is None:
            return self.stream("threads.create", input=user_input(text))
        return self.stream("threads.add_user_message", thread_id=thread_id, input=user_input(text))


def thread_id_of(events: list[dict[str, Any]]) -> str:
    [created] = [event for event in events if event["type"] == "thread.created"]
    return created["thread"]["id"]


def done_items(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event["item"] for event in events if event["type"] == "thread.item.done"]


def assistant_texts(events: list[dict[str, Any]]) -> list[str]:
    return [
        "".join(part["text"] for part in item["content"])
        for item in done_items(events)
        if item["type"] == "assistant_message"
    ]
