"""A fake OpenAI Responses API, paced like a real model: what the self-hosted agent's default
model (the Agents SDK's OpenAIResponsesModel, through the real `openai` client) calls over
HTTP in the tests and in the streaming benchmark.

`POST /v1/responses` streams an answer of WORDS words, the same events the tests' scripted
model produces (tests/fake_model.py): its first delta `first_delta_seconds` after the request
arrived, then a word every `delta_interval_seconds`. The app remembers when each question
reached it, by its marker (the last `bench-question-...` of the request: the newest message
of the history), in `time.monotonic()` seconds, which every process on the machine shares,
and which client connections asked (address and port). `GET /arrivals` answers the times.

    python -m uvicorn --factory tests.fake_responses:paced_app --port PORT

serves it paced by BENCH_FIRST_DELTA_MS (default 300) and BENCH_DELTA_INTERVAL_MS (20).

A request that is not streamed is the thread-title model's (chatkit_api.thread_titles): it is
recorded in `title_requests` and answered with `title` as a whole Response, once
`title_release` is set when a test holds it back, or with the error `title_status` says.
"""

import asyncio
import json
import os
import re
import threading
import time
import uuid
from typing import Any

from openai.types.responses import Response, ResponseOutputMessage, ResponseOutputText

from tests.fake_model import Say, response_stream_events

WORDS = 40
ANSWER = " ".join(f"word{n}" for n in range(WORDS))
MARKER = re.compile(rb"bench-question-[0-9a-z-]+")
TITLE = "Front brake pads quote"
# The longest a held-back title waits for its release.
TITLE_HELD_SECONDS = 30


class FakeResponses:
    """The ASGI application."""

    def __init__(self, first_delta_seconds: float = 0.0, delta_interval_seconds: float = 0.0) -> None:
        self.first_delta_seconds = first_delta_seconds
        self.delta_interval_seconds = delta_interval_seconds
        self.arrivals: dict[str, float] = {}
        self.connections: list[tuple[str, int]] = []
        self.title = TITLE
        self.title_status = 200
        self.title_release: threading.Event | None = None
        self.title_requests: list[dict[str, Any]] = []
        # Set once a title has been answered (or refused).
        self.title_answered = threading.Event()
        # The body of every answer the model was asked for (titles apart), as JSON.
        self.requests: list[dict[str, Any]] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        arrived = time.monotonic()
        if scope["method"] == "GET" and scope["path"] == "/arrivals":
            await _send_json(send, 200, self.arrivals)
            return
        if scope["method"] != "POST" or scope["path"] != "/v1/responses":
            await _send_json(send, 404, {"error": {"message": f"not faked: {scope['path']}"}})
            return
        self.connections.append(tuple(scope["client"]))
        body = await _body(receive)
        markers = MARKER.findall(body)
        if markers:
            self.arrivals[markers[-1].decode()] = arrived
        request = json.loads(body)
        if not request.get("stream"):
            self.title_requests.append(request)
            await self._answer_title(send, request)
            return
        self.requests.append(request)
        await self._stream_answer(send, arrived)

    async def _answer_title(self, send: Any, request: dict[str, Any]) -> None:
        if self.title_release is not None:
            # Polled, so that the client giving up (a cancelled title) ends nothing here early.
            held_until = time.monotonic() + TITLE_HELD_SECONDS
            while not self.title_release.is_set() and time.monotonic() < held_until:
                await asyncio.sleep(0.005)
        try:
            if self.title_status != 200:
                await _send_json(send, self.title_status, {"error": {"message": "title model failed"}})
                return
            response = Response(
                id=f"resp_{uuid.uuid4().hex}",
                created_at=time.time(),
                model=request["model"],
                object="response",
                status="completed",
                output=[
                    ResponseOutputMessage(
                        id=f"msg_{uuid.uuid4().hex}",
                        role="assistant",
                        status="completed",
                        type="message",
                        content=[ResponseOutputText(type="output_text", text=self.title, annotations=[])],
                    )
                ],
                parallel_tool_calls=False,
                tool_choice="auto",
                tools=[],
            )
            await _send_json(send, 200, response.model_dump(mode="json"))
        finally:
            self.title_answered.set()

    async def _stream_answer(self, send: Any, arrived: float) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        deltas_sent = 0
        for event in response_stream_events(Say(ANSWER)):
            if event.type == "response.output_text.delta":
                if deltas_sent == 0:
                    await asyncio.sleep(max(0.0, arrived + self.first_delta_seconds - time.monotonic()))
                else:
                    await asyncio.sleep(self.delta_interval_seconds)
                deltas_sent += 1
            chunk = f"event: {event.type}\ndata: {event.model_dump_json()}\n\n".encode()
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def paced_app() -> FakeResponses:
    return FakeResponses(
        first_delta_seconds=int(os.environ.get("BENCH_FIRST_DELTA_MS", "300")) / 1000,
        delta_interval_seconds=int(os.environ.get("BENCH_DELTA_INTERVAL_MS", "20")) / 1000,
    )


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_json(send: Any, status: int, payload: Any) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": json.dumps(payload).encode()})
