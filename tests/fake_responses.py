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
"""

import asyncio
import json
import os
import re
import time
from typing import Any

from tests.fake_model import Say, response_stream_events

WORDS = 40
ANSWER = " ".join(f"word{n}" for n in range(WORDS))
MARKER = re.compile(rb"bench-question-[0-9a-z-]+")


class FakeResponses:
    """The ASGI application."""

    def __init__(self, first_delta_seconds: float = 0.0, delta_interval_seconds: float = 0.0) -> None:
        self.first_delta_seconds = first_delta_seconds
        self.delta_interval_seconds = delta_interval_seconds
        self.arrivals: dict[str, float] = {}
        self.connections: list[tuple[str, int]] = []

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
        if not json.loads(body).get("stream"):
            await _send_json(send, 400, {"error": {"message": "only streamed answers are faked"}})
            return
        await self._stream_answer(send, arrived)

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
