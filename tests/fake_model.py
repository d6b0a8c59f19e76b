"""A stand-in for the agent's language model, behind the Agents SDK's own `Model` interface.

Everything around it is real: the Agents SDK runs the agent, calls tools and streams events,
and openai-chatkit turns those events into thread items. Only the model's words come from
here: each turn answers with the next scripted step, or echoes the visitor's last message.
No network is involved.
"""

import asyncio
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionToolCall,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)


@dataclass
class ModelCall:
    """What the agent sent the model on one turn."""

    instructions: str | None
    input: list[dict[str, Any]]
    tool_names: list[str]

    def texts(self, role: str) -> list[str]:
        """The text of every input message with this role, in order."""
        found = []
        for item in self.input:
            if item.get("role") != role:
                continue
            content = item.get("content")
            parts = [content] if isinstance(content, str) else [part.get("text", "") for part in content]
            found.append("".join(parts))
        return found


@dataclass
class Say:
    text: str


@dataclass
class CallTool:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass
class Wait:
    """Hold the answer back until the test sets `release`, then take the step `then`."""

    release: threading.Event
    then: Say | CallTool


@dataclass
class Fail:
    """The model call fails, as when the API is down."""

    message: str


@dataclass
class Stall:
    """Start the answer with `text`, then never finish it, as a model that hangs mid-answer."""

    text: str


Step = Say | CallTool | Wait | Fail | Stall


class ScriptedModel(Model):
    def __init__(self) -> None:
        self.script: deque[Step] = deque()
        self.calls: list[ModelCall] = []

    def reset(self) -> None:
        self.script.clear()
        self.calls.clear()

    def _next_step(self, call: ModelCall) -> Step:
        if self.script:
            return self.script.popleft()
        last = call.texts("user")[-1] if call.texts("user") else ""
        return Say(f"You said: {last}")

    def _record(self, instructions: str | None, input: Any, tools: list[Any]) -> ModelCall:
        items = [{"role": "user", "content": input}] if isinstance(input, str) else [dict(i) for i in input]
        call = ModelCall(instructions=instructions, input=items, tool_names=[tool.name for tool in tools])
        self.calls.append(call)
        return call

    async def _resolve(self, step: Step) -> Say | CallTool | Stall:
        if isinstance(step, Fail):
            raise RuntimeError(step.message)
        if isinstance(step, Wait):
            # Polled rather than waited on in a thread, so that cancelling the run stops it.
            while not step.release.is_set():
                await asyncio.sleep(0.005)
            return step.then
        return step

    async def get_response(self, system_instructions, input, model_settings, tools, *args, **kwargs):  # type: ignore[no-untyped-def]
        step = await self._resolve(self._next_step(self._record(system_instructions, input, tools)))
        return ModelResponse(output=[_output_item(step)], usage=Usage(), response_id=None)

    async def stream_response(  # type: ignore[override]
        self, system_instructions, input, model_settings, tools, *args, **kwargs
    ) -> AsyncIterator[Any]:
        step = await self._resolve(self._next_step(self._record(system_instructions, input, tools)))
        if isinstance(step, Stall):
            # The answer's first events, without its end; then nothing, until cancelled.
            for event in response_stream_events(Say(step.text))[:-4]:
                yield event
            await asyncio.Event().wait()
        for event in response_stream_events(step):
            yield event


def _output_item(step: Say | CallTool) -> Any:
    if isinstance(step, CallTool):
        return ResponseFunctionToolCall(
            id=f"fc_{uuid.uuid4().hex}",
            call_id=f"call_{uuid.uuid4().hex}",
            name=step.name,
            arguments=json.dumps(step.arguments),
            type="function_call",
            status="completed",
        )
    return ResponseOutputMessage(
        id=f"msg_{uuid.uuid4().hex}",
        role="assistant",
        status="completed",
        type="message",
        content=[ResponseOutputText(type="output_text", text=step.text, annotations=[])],
    )


def response_stream_events(step: Say | CallTool) -> list[Any]:
    """The Responses API events a real model would stream for this step."""
    sequence = iter(range(1_000))
    done = _output_item(step)
    response = Response(
        id=f"resp_{uuid.uuid4().hex}",
        created_at=time.time(),
        model="scripted",
        object="response",
        output=[],
        parallel_tool_calls=False,
        tool_choice="auto",
        tools=[],
    )
    events: list[Any] = [
        ResponseCreatedEvent(type="response.created", response=response, sequence_number=next(sequence))
    ]
    if isinstance(step, CallTool):
        events.append(
            ResponseOutputItemAddedEvent(
                type="response.output_item.added", item=done, output_index=0, sequence_number=next(sequence)
            )
        )
    else:
        started = done.model_copy(update={"content": [], "status": "in_progress"})
        empty = ResponseOutputText(type="output_text", text="", annotations=[])
        common = {"item_id": done.id, "output_index": 0, "content_index": 0}
        events.append(
            ResponseOutputItemAddedEvent(
                type="response.output_item.added",
                item=started,
                output_index=0,
                sequence_number=next(sequence),
            )
        )
        events.append(
            ResponseContentPartAddedEvent(
                type="response.content_part.added", part=empty, sequence_number=next(sequence), **common
            )
        )
        # Word by word, as a model streams.
        first, *rest = step.text.split(" ")
        for delta in [first, *(f" {word}" for word in rest)]:
            events.append(
                ResponseTextDeltaEvent(
                    type="response.output_text.delta",
                    delta=delta,
                    logprobs=[],
                    sequence_number=next(sequence),
                    **common,
                )
            )
        events.append(
            ResponseTextDoneEvent(
                type="response.output_text.done",
                text=step.text,
                logprobs=[],
                sequence_number=next(sequence),
                **common,
            )
        )
        events.append(
            ResponseContentPartDoneEvent(
                type="response.content_part.done",
                part=done.content[0],
                sequence_number=next(sequence),
                **common,
            )
        )
    events.append(
        ResponseOutputItemDoneEvent(
            type="response.output_item.done", item=done, output_index=0, sequence_number=next(sequence)
        )
    )
    events.append(
        ResponseCompletedEvent(
            type="response.completed",
            response=response.model_copy(update={"output": [done], "status": "completed"}),
            sequence_number=next(sequence),
        )
    )
    return events
