"""Self-hosted ChatKit: the openai-chatkit server over the database store, answered by the agent.

`chatkit_request_process` is the service behind `POST /api/chatkit`. It checks the request
before anything is stored, runs the ChatKit server on a per-request event loop, and hands
back either a JSON body or the server-sent events of a streamed answer.

Besides the agent's answers the server handles one action, `send_recap`: the widget sends it
(`chatkit.sendCustomAction`) with the visitor's details, and the thread is mailed exactly as
the transcript endpoint would mail it.
"""

import logging
import re
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents import (
    Agent,
    InputGuardrailTripwireTriggered,
    OutputGuardrailTripwireTriggered,
    RunConfig,
    Runner,
)
from agents.models.openai_provider import OpenAIProvider
from chatkit.agents import AgentContext, ThreadItemConverter, stream_agent_response
from chatkit.errors import CustomStreamError
from chatkit.server import ChatKitServer, NonStreamingResult
from chatkit.store import NotFoundError
from chatkit.types import (
    Action,
    AssistantMessageContent,
    AssistantMessageItem,
    Attachment,
    AttachmentsCreateReq,
    AttachmentsDeleteReq,
    ChatKitReq,
    ClientEffectEvent,
    ErrorCode,
    ErrorEvent,
    HiddenContextItem,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadStreamEvent,
    ThreadsUpdateReq,
    UserMessageItem,
    WidgetItem,
)
from django.conf import settings
from openai.types.responses import ResponseInputTextParam
from openai.types.responses.response_input_item_param import Message
from pydantic import TypeAdapter, ValidationError

from chatkit_api import openai_gateway
from chatkit_api.agent import agent_load
from chatkit_api.chatkit_store import ChatKitContext, DjangoStore
from chatkit_api.event_loop import RequestEventLoop
from chatkit_api.exceptions import (
    ChatKitItemNotFound,
    InvalidChatKitRequest,
    NotConfigured,
    NotServedInThisMode,
    ServiceError,
    validation_summary,
)
from chatkit_api.models import ChatKitThread, char_limit
from chatkit_api.ratelimits import CHATKIT_REQUESTS_PER_IP, ip_subject, rate_limit_consume
from chatkit_api.rendering import conversation_text
from chatkit_api.serializers import LeadSerializer, lead_from
from chatkit_api.services import CHATKIT_SETTINGS, Caller, self_hosted, settings_missing, transcript_send

logger = logging.getLogger(__name__)

# The action the widget sends to mail the conversation (see docs/api.md, "Send recap from the widget").
RECAP_ACTION = "send_recap"
# How many of a thread's latest items the agent reads on each turn.
HISTORY_ITEMS = 100
# What the visitor reads when a guardrail stops the agent without saying what to answer.
GUARDRAIL_ANSWER = "Sorry, I can't help with that here."
# Threads are titled after the visitor's first message, cut to this length.
TITLE_LENGTH = 60

_CHATKIT_REQUEST: TypeAdapter[Any] = TypeAdapter(ChatKitReq)


@dataclass(frozen=True)
class ChatKitReply:
    """A complete JSON or SSE body, or (when streamed) the SSE chunks as they are produced."""

    content_type: str
    body: bytes = b""
    stream: Iterator[bytes] | None = None


def _title(message: UserMessageItem) -> str | None:
    text = " ".join(part.text for part in message.content if part.type == "input_text")
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > TITLE_LENGTH:
        text = text[: TITLE_LENGTH - 1].rstrip() + "…"
    return text or None


class HistoryConverter(ThreadItemConverter):
    """A thread's items as the agent's input, including what threads imported from managed
    ChatKit carry: the SDK's own converter refuses both attachments and structured hidden items.
    """

    async def attachment_to_message_content(self, attachment: Attachment) -> ResponseInputTextParam:
        # Only imported messages have attachments; their files stayed with OpenAI.
        return ResponseInputTextParam(
            type="input_text",
            text=f"[The visitor attached {attachment.name} ({attachment.mime_type}); the file is gone.]",
        )

    async def hidden_context_to_input(self, item: HiddenContextItem) -> Any:
        if isinstance(item.content, str):
            return await super().hidden_context_to_input(item)
        # A managed item kept whole: the model reads it as the transcript shows it.
        text = conversation_text([item.model_dump(mode="json")])
        return Message(
            type="message",
            role="user",
            content=[ResponseInputTextParam(type="input_text", text=f"Earlier in this conversation: {text}")],
        )


_HISTORY = HistoryConverter()


class SiteChatKitServer(ChatKitServer[ChatKitContext]):
    def __init__(self, agent: Agent) -> None:
        super().__init__(store=DjangoStore())
        self.agent = agent

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: ChatKitContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        if input_user_message is not None and not thread.title:
            # The server saves a changed thread and tells the widget, whose history lists it.
            thread.title = _title(input_user_message)
        recent = await self.store.load_thread_items(thread.id, None, HISTORY_ITEMS, "desc", context)
        history = await _HISTORY.to_agent_input(list(reversed(recent.data)))
        agent_context = AgentContext(thread=thread, store=self.store, request_context=context)
        client = openai_gateway.async_client()
        try:
            result = Runner.run_streamed(
                self.agent,
                history,
                context=agent_context,
                run_config=RunConfig(
                    model_provider=OpenAIProvider(openai_client=client),
                    tracing_disabled=not settings.CHATKIT_AGENT_TRACING,
                ),
            )
            async for event in stream_agent_response(agent_context, result):
                yield event
        except (InputGuardrailTripwireTriggered, OutputGuardrailTripwireTriggered) as tripped:
            yield self._guardrail_answer(thread, tripped, context)
        finally:
            await client.close()

    def _guardrail_answer(
        self,
        thread: ThreadMetadata,
        tripped: InputGuardrailTripwireTriggered | OutputGuardrailTripwireTriggered,
        context: ChatKitContext,
    ) -> ThreadItemDoneEvent:
        """A guardrail stopped the run: its `output_info`, when it is text, is the answer."""
        info = tripped.guardrail_result.output.output_info
        logger.info("ChatKit run stopped by a guardrail: %s", tripped)
        return ThreadItemDoneEvent(
            item=AssistantMessageItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(UTC),
                content=[
                    AssistantMessageContent(text=info if isinstance(info, str) and info else GUARDRAIL_ANSWER)
                ],
            )
        )

    async def action(
        self,
        thread: ThreadMetadata,
        action: Action[str, Any],
        sender: WidgetItem | None,
        context: ChatKitContext,
    ) -> AsyncIterator[ThreadStreamEvent]:
        if action.type != RECAP_ACTION:
            raise CustomStreamError("This action is not supported.")
        serializer = LeadSerializer(data=action.payload if action.payload is not None else {})
        if not serializer.is_valid():
            raise CustomStreamError(validation_summary(serializer.errors)[0])
        lead = lead_from(serializer.validated_data)
        try:
            transcript = await context.event_loop.call(
                transcript_send,
                caller=Caller(visitor_id=context.visitor_id, client_ip=context.client_ip),
                thread_id=thread.id,
                lead=lead,
            )
        except ServiceError as exc:
            raise CustomStreamError(exc.message, allow_retry=exc.status_code >= 500) from exc
        # Kept for the agent, never shown: on the next turn it knows the team has the details.
        yield ThreadItemDoneEvent(
            item=HiddenContextItem(
                id=self.store.generate_item_id("message", thread, context),
                thread_id=thread.id,
                created_at=datetime.now(UTC),
                content=f"The visitor sent this conversation and their details to the team ({lead.mode}).",
            )
        )
        yield ClientEffectEvent(name="recap_sent", data={"transcriptId": transcript.id, "mode": lead.mode})


def _parse(body: bytes) -> Any:
    try:
        return _CHATKIT_REQUEST.validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()[:3]
        )
        raise InvalidChatKitRequest(f"Invalid ChatKit request. {problems}") from None


def _check_supported(request: Any) -> None:
    """Refuse what this server cannot do before anything is stored."""
    uploads = isinstance(request, (AttachmentsCreateReq, AttachmentsDeleteReq)) or (
        isinstance(request, (ThreadsCreateReq, ThreadsAddUserMessageReq)) and request.params.input.attachments
    )
    if uploads:
        raise InvalidChatKitRequest("File uploads are not enabled on this server.")
    title_length = char_limit(ChatKitThread, "title")
    if isinstance(request, ThreadsUpdateReq) and len(request.params.title) > title_length:
        raise InvalidChatKitRequest(
            f"Invalid ChatKit request. params.title: at most {title_length} characters."
        )


@contextmanager
def _refusals() -> Iterator[None]:
    """The SDK's answers to a request this visitor cannot make, as client errors."""
    try:
        yield
    except NotFoundError as exc:
        raise ChatKitItemNotFound(f"Not found: {exc}.") from None
    except NotImplementedError:
        raise InvalidChatKitRequest("This ChatKit request is not supported by this server.") from None
    except ValueError as exc:
        # E.g. tool output when no tool call is waiting for it, or a retry of an item that is
        # not a user message.
        logger.info("ChatKit request refused: %s", exc)
        raise InvalidChatKitRequest(
            "This ChatKit request does not apply to the thread in its state."
        ) from None


def _error_chunk() -> bytes:
    event = ErrorEvent(code=ErrorCode.STREAM_ERROR, allow_retry=True)
    return b"data: " + event.model_dump_json(exclude_none=True).encode() + b"\n\n"


def sse_stream(
    event_loop: RequestEventLoop, events: Generator[bytes, None, None], first: bytes
) -> Iterator[bytes]:
    """The stream after its first event; a failure from here on can only be reported in it."""
    try:
        yield first
        try:
            yield from events
        except Exception:
            logger.exception("The ChatKit stream failed after it started")
            yield _error_chunk()
    finally:
        events.close()
        event_loop.close()


def chatkit_request_process(
    *, visitor_id: str, client_ip: str, body: bytes, stream: bool, locale: str = "en", page_url: str = ""
) -> ChatKitReply:
    """Serve one ChatKit protocol request for the visitor.

    Everything that can be refused (mode, configuration, a malformed request, another
    visitor's thread) is refused with an error status before anything is stored. `stream`
    says whether the host can stream; otherwise the events come back as one complete body.
    `locale` and `page_url` reach the agent as the managed workflow's state variables did.
    """
    if not self_hosted():
        raise NotServedInThisMode(
            "Not found: this service runs managed ChatKit (CHATKIT_MODE=managed); the widget gets "
            "a client secret from /api/chatkit/session."
        )
    missing = settings_missing(names=CHATKIT_SETTINGS)
    if missing:
        raise NotConfigured(missing)
    rate_limit_consume(limit=CHATKIT_REQUESTS_PER_IP, subject=ip_subject(client_ip))
    request = _parse(body)
    _check_supported(request)
    server = SiteChatKitServer(agent_load())

    event_loop = RequestEventLoop()
    context = ChatKitContext(
        visitor_id=visitor_id, event_loop=event_loop, client_ip=client_ip, locale=locale, page_url=page_url
    )
    try:
        with _refusals():
            result = event_loop.run(server.process(body, context))
            if not isinstance(result, NonStreamingResult):
                # Until the first event the request can still fail with an error status.
                events = event_loop.iterate(result)
                first = next(events)
    except BaseException:
        event_loop.close()
        raise
    if isinstance(result, NonStreamingResult):
        event_loop.close()
        return ChatKitReply(content_type="application/json", body=result.json)
    chunks = sse_stream(event_loop, events, first)
    if stream:
        return ChatKitReply(content_type="text/event-stream", stream=chunks)
    return ChatKitReply(content_type="text/event-stream", body=b"".join(chunks))
