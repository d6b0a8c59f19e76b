"""The reference the streaming benchmark holds this service to: a minimal ChatKit server as
OpenAI's samples build one, on the same openai-chatkit and openai-agents versions.

    python -m uvicorn bench.reference_server:app --port PORT

FastAPI on uvicorn, threads kept in memory (nothing survives the process), the Agents SDK's
process-wide OpenAI client (from OPENAI_BASE_URL and OPENAI_API_KEY), and none of what a
production service adds: no visitors, limits, deadline, heartbeats or database.
"""

import os
from collections import defaultdict
from typing import Any

from agents import Agent, Runner
from chatkit.agents import AgentContext, simple_to_agent_input, stream_agent_response
from chatkit.server import ChatKitServer, StreamingResult
from chatkit.store import NotFoundError, Store
from chatkit.types import Attachment, Page, ThreadItem, ThreadMetadata, UserMessageItem
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

HISTORY_ITEMS = 20


class MemoryStore(Store[dict]):
    def __init__(self) -> None:
        self.threads: dict[str, ThreadMetadata] = {}
        self.items: dict[str, list[ThreadItem]] = defaultdict(list)

    async def load_thread(self, thread_id: str, context: dict) -> ThreadMetadata:
        if thread_id not in self.threads:
            raise NotFoundError(f"Thread {thread_id} not found")
        return self.threads[thread_id]

    async def save_thread(self, thread: ThreadMetadata, context: dict) -> None:
        self.threads[thread.id] = thread

    async def load_threads(
        self, limit: int, after: str | None, order: str, context: dict
    ) -> Page[ThreadMetadata]:
        threads = sorted(self.threads.values(), key=lambda t: t.created_at, reverse=order == "desc")
        return _page(threads, limit, after)

    async def delete_thread(self, thread_id: str, context: dict) -> None:
        self.threads.pop(thread_id, None)
        self.items.pop(thread_id, None)

    async def load_thread_items(
        self, thread_id: str, after: str | None, limit: int, order: str, context: dict
    ) -> Page[ThreadItem]:
        items = self.items[thread_id]
        return _page(list(reversed(items)) if order == "desc" else list(items), limit, after)

    async def add_thread_item(self, thread_id: str, item: ThreadItem, context: dict) -> None:
        self.items[thread_id].append(item)

    async def save_item(self, thread_id: str, item: ThreadItem, context: dict) -> None:
        items = self.items[thread_id]
        for index, existing in enumerate(items):
            if existing.id == item.id:
                items[index] = item
                return
        items.append(item)

    async def load_item(self, thread_id: str, item_id: str, context: dict) -> ThreadItem:
        for item in self.items[thread_id]:
            if item.id == item_id:
                return item
        raise NotFoundError(f"Item {item_id} not found")

    async def delete_thread_item(self, thread_id: str, item_id: str, context: dict) -> None:
        self.items[thread_id] = [item for item in self.items[thread_id] if item.id != item_id]

    async def save_attachment(self, attachment: Attachment, context: dict) -> None:
        raise NotImplementedError

    async def load_attachment(self, attachment_id: str, context: dict) -> Attachment:
        raise NotImplementedError

    async def delete_attachment(self, attachment_id: str, context: dict) -> None:
        raise NotImplementedError


def _page(records: list[Any], limit: int, after: str | None) -> Page:
    start = next((n + 1 for n, record in enumerate(records) if record.id == after), 0) if after else 0
    chosen = records[start : start + limit]
    return Page(
        data=chosen,
        has_more=start + limit < len(records),
        after=chosen[-1].id if chosen else None,
    )


assistant = Agent(
    name="Assistant",
    instructions="You are a helpful assistant on a company's website.",
    model=os.environ.get("CHATKIT_AGENT_MODEL", "gpt-4.1-mini"),
)


class ReferenceServer(ChatKitServer[dict]):
    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: dict
    ):
        recent = await self.store.load_thread_items(thread.id, None, HISTORY_ITEMS, "desc", context)
        agent_input = await simple_to_agent_input(list(reversed(recent.data)))
        agent_context = AgentContext(thread=thread, store=self.store, request_context=context)
        result = Runner.run_streamed(assistant, agent_input, context=agent_context)
        async for event in stream_agent_response(agent_context, result):
            yield event


server = ReferenceServer(MemoryStore())
app = FastAPI()


@app.get("/health")
async def health() -> dict:
    return {"ok": True}


@app.post("/chatkit")
async def chatkit(request: Request) -> Response:
    result = await server.process(await request.body(), {})
    if isinstance(result, StreamingResult):
        return StreamingResponse(result, media_type="text/event-stream")
    return Response(content=result.json, media_type="application/json")
