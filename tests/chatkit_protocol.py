"""A browser speaking the ChatKit protocol to `POST /api/chatkit`, as the widget does.

Request bodies are shaped like the ones ChatKit.js sends (`type`, `params`, `metadata`);
streamed answers are parsed from their server-sent events.
"""

import json
from typing import Any

from django.http import HttpResponseBase
from django.test import Client

CHATKIT_URL = "/api/chatkit"


def user_input(text: str, *, quoted_text: str | None = None) -> dict[str, Any]:
    return {
        "content": [{"type": "input_text", "text": text}],
        "attachments": [],
        "quoted_text": quoted_text,
        "inference_options": {},
    }


def sse_events(body: bytes) -> list[dict[str, Any]]:
    events = []
    for block in body.decode().split("\n\n"):
        if block.strip():
            assert block.startswith("data: "), block
            events.append(json.loads(block.removeprefix("data: ")))
    return events


def body_of(response: HttpResponseBase) -> bytes:
    # The test client closes a streamed response once its content has been read.
    if response.streaming:  # type: ignore[attr-defined]
        return b"".join(response.streaming_content)  # type: ignore[attr-defined]
    return response.content  # type: ignore[attr-defined]


class ChatKitBrowser:
    """One visitor's browser: keeps the cookie /api/chatkit gives it."""

    def __init__(self, **headers: str) -> None:
        # A browser sends the page's Origin with every POST; the widget's page is the API's.
        self.client = Client(**{"HTTP_ORIGIN": "http://testserver", **headers})

    def post(self, type: str, **params: Any) -> HttpResponseBase:
        body = {"type": type, "params": params, "metadata": {}}
        return self.client.post(CHATKIT_URL, json.dumps(body), content_type="application/json")

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
