"""Self-hosted ChatKit: the openai-chatkit server over the database store, answered by the agent.

`chatkit_request_serve` is the service behind `POST /api/chatkit`. It checks the request
before anything is stored, runs the ChatKit server on the event loop it is awaited on (an
ASGI server's own), and hands back either a JSON body or the server-sent events of an answer.

An answer is bounded: it runs on a thread nobody else is answering on (a second message
meanwhile is refused with 409), stops at CHATKIT_AGENT_TIMEOUT_SECONDS with an error event,
sends a comment while the agent is silent so that proxies keep the connection, and stops
when the visitor goes away. What was written of a stopped answer is kept, marked as cut off.

Visitors' attachments go through the SDK's two-phase upload (chatkit_api.attachments): a
message's files are checked before anything of it is stored, and reach the model as image and
file input parts.

Besides the agent's answers the server handles one action, `send_recap`: the widget sends it
(`chatkit.sendCustomAction`) with the visitor's details, and the thread is mailed exactly as
the transcript endpoint would mail it. A visitor's thumbs up or down on an answer
(`items.feedback`) is kept with the answer, for staff to see.
"""

import asyncio
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from agents import (
    Agent,
    InputGuardrailTripwireTriggered,
    OutputGuardrailTripwireTriggered,
    RunConfig,
    Runner,
)
from agents.models.openai_provider import OpenAIProvider
from asgiref.sync import sync_to_async
from chatkit.agents import AgentContext, ThreadItemConverter, stream_agent_response
from chatkit.errors import CustomStreamError
from chatkit.server import ChatKitServer, NonStreamingResult, StreamingResult
from chatkit.store import NotFoundError
from chatkit.types import (
    Action,
    AssistantMessageContent,
    AssistantMessageItem,
    Attachment,
    ChatKitReq,
    ClientEffectEvent,
    ErrorCode,
    ErrorEvent,
    FeedbackKind,
    HiddenContextItem,
    ItemsFeedbackReq,
    SDKHiddenContextItem,
    ThreadItem,
    ThreadItemDoneEvent,
    ThreadMetadata,
    ThreadsAddClientToolOutputReq,
    ThreadsAddStructuredInputReq,
    ThreadsAddUserMessageReq,
    ThreadsCreateReq,
    ThreadsCustomActionReq,
    ThreadsRetryAfterItemReq,
    ThreadStreamEvent,
    ThreadsUpdateReq,
    ThreadUpdatedEvent,
    UserMessageItem,
    UserMessageTagContent,
    WidgetItem,
    is_streaming_req,
)
from django.conf import settings
from openai.types.responses import ResponseInputFileParam, ResponseInputImageParam, ResponseInputTextParam
from openai.types.responses.response_input_item_param import Message
from pydantic import BaseModel, TypeAdapter, ValidationError

from chatkit_api import openai_gateway
from chatkit_api.agent import agent_load
from chatkit_api.attachments import (
    attachment_model_input,
    attachments_check_for_message,
    attachments_sent_whole,
)
from chatkit_api.chatkit_store import (
    MAX_PAGE_SIZE,
    ChatKitContext,
    DjangoStore,
    Run,
    SiteAttachmentStore,
    database,
    feedback_save,
    thread_run_claim,
    thread_run_release,
    thread_title_if_untitled,
)
from chatkit_api.exceptions import (
    ChatKitItemNotFound,
    InvalidChatKitRequest,
    NotConfigured,
    NotServedInThisMode,
    ServiceError,
    ThreadBusy,
    validation_summary,
)
from chatkit_api.models import ChatKitThread, char_limit
from chatkit_api.ratelimits import CHATKIT_REQUESTS_PER_IP, ip_subject, rate_limit_consume
from chatkit_api.rendering import conversation_text
from chatkit_api.serializers import LeadSerializer, lead_from
from chatkit_api.services import CHATKIT_SETTINGS, Caller, self_hosted, settings_missing, transcript_send
from chatkit_api.thread_titles import title_start, titles_settle

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


# Sent while the agent is silent: an SSE comment, which clients ignore.
HEARTBEAT = b": keep-alive\n\n"
# A claim on a thread outlives the answer's deadline by this much, for the answer's last
# writes; a claim left by a process that died runs out then.
CLAIM_MARGIN = timedelta(seconds=30)
TIMED_OUT = "The answer took too long and was stopped. Please try again."
CUT_OFF = "[Stopped here: the answer took too long.]"
THREAD_BUSY = (
    "An answer is still being written in this conversation. Wait for it to finish, then send "
    "your message again."
)
# Requests that make the agent answer on a thread that already exists.
_RUNS_ON_A_THREAD = (
    ThreadsAddUserMessageReq,
    ThreadsRetryAfterItemReq,
    ThreadsAddClientToolOutputReq,
    ThreadsAddStructuredInputReq,
    ThreadsCustomActionReq,
)


@dataclass(frozen=True)
class ChatKitReply:
    """A complete JSON or SSE body, or (for an answer) its server-sent events as they come."""

    content_type: str
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None


def _message_text(message: UserMessageItem) -> str:
    text = " ".join(part.text for part in message.content if part.type == "input_text")
    return re.sub(r"\s+", " ", text).strip()


def _title(message: UserMessageItem) -> str | None:
    text = _message_text(message)
    if len(text) > TITLE_LENGTH:
        text = text[: TITLE_LENGTH - 1].rstrip() + "…"
    return text or None


class HistoryConverter(ThreadItemConverter):
    """A thread's items as the agent's input: attachments as image and file parts, and what
    threads imported from managed ChatKit carry, which the SDK's own converter refuses
    (attachments, structured hidden items). One converter per turn: which files go whole is
    decided for the whole history at once."""

    def __init__(self, items: list[ThreadItem]) -> None:
        self.sent_whole = attachments_sent_whole(
            [item.attachments for item in items if isinstance(item, UserMessageItem)]
        )

    async def attachment_to_message_content(
        self, attachment: Attachment
    ) -> ResponseInputImageParam | ResponseInputFileParam | ResponseInputTextParam:
        # An image or file the model reads, or a note where it is not sent again or the file is
        # gone (an imported message's stayed with OpenAI). Read from storage off Django's
        # thread for the database.
        return await sync_to_async(attachment_model_input, thread_sensitive=False)(
            attachment, sent_whole=attachment.id in self.sent_whole
        )

    async def tag_to_message_content(self, tag: UserMessageTagContent) -> ResponseInputTextParam:
        # An @-mention the site offers in the widget: its label and the data the site gave it.
        return ResponseInputTextParam(type="input_text", text=f"@{tag.text}: {json.dumps(tag.data)}")

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


class SiteChatKitServer(ChatKitServer[ChatKitContext]):
    def __init__(self, agent: Agent) -> None:
        super().__init__(store=DjangoStore(), attachment_store=SiteAttachmentStore())
        self.agent = agent

    async def process_parsed(
        self, parsed: ChatKitReq, context: ChatKitContext
    ) -> StreamingResult | NonStreamingResult:
        """As ChatKitServer.process, for a request already parsed (with a validator built once:
        the SDK builds one of the whole request union on every call, about 5 ms of CPU)."""
        if is_streaming_req(parsed):
            return StreamingResult(self._process_streaming(parsed, context))
        return NonStreamingResult(await self._process_non_streaming(parsed, context))

    async def respond(
        self, thread: ThreadMetadata, input_user_message: UserMessageItem | None, context: ChatKitContext
    ) -> AsyncIterator[ThreadStreamEvent]:
        title = _title(input_user_message) if input_user_message is not None and not thread.title else None
        # Written only where the thread has no title yet, never over one the visitor chose while
        # the answer ran; the thread object the server saves is left as it is for that reason.
        retitle: asyncio.Task[str | None] | None = None
        if (
            title is not None
            and input_user_message is not None
            and await database(
                thread_title_if_untitled, visitor_id=context.visitor_id, thread_id=thread.id, title=title
            )
        ):
            yield self._title_event(thread, title)
            # The title model writes a better one beside the answer, if the site chose one.
            retitle = title_start(
                visitor_id=context.visitor_id,
                thread_id=thread.id,
                short_title=title,
                message=_message_text(input_user_message),
            )
        recent = await self.store.load_thread_items(thread.id, None, HISTORY_ITEMS, "desc", context)
        items = list(reversed(recent.data))
        history = await HistoryConverter(items).to_agent_input(items)
        agent_context = AgentContext(thread=thread, store=self.store, request_context=context)
        client = openai_gateway.async_client()
        result = Runner.run_streamed(
            self.agent,
            history,
            context=agent_context,
            run_config=RunConfig(
                model_provider=OpenAIProvider(openai_client=client),
                tracing_disabled=not settings.CHATKIT_AGENT_TRACING,
            ),
        )
        try:
            async for event in stream_agent_response(agent_context, result):
                yield event
                if retitle is not None and retitle.done():
                    # Told to the widget while the answer still streams; never waited for.
                    if retitled := retitle.result():
                        yield self._title_event(thread, retitled)
                    retitle = None
        except (InputGuardrailTripwireTriggered, OutputGuardrailTripwireTriggered) as tripped:
            yield self._guardrail_answer(thread, tripped, context)
        finally:
            # The run goes on in tasks of its own: stopped with the stream, whatever ended it
            # (the deadline, the visitor leaving, an error). openai-chatkit leaves a task waiting
            # on the context's event queue when its stream is cancelled; the end marker lets it
            # finish instead of waiting forever.
            result.cancel()
            agent_context._complete()
        if retitle is not None and retitle.done() and (retitled := retitle.result()):
            yield self._title_event(thread, retitled)

    def _title_event(self, thread: ThreadMetadata, title: str) -> ThreadUpdatedEvent:
        return ThreadUpdatedEvent(thread=self._to_thread_response(thread.model_copy(update={"title": title})))

    async def handle_stream_cancelled(
        self, thread: ThreadMetadata, pending_items: list[ThreadItem], context: ChatKitContext
    ) -> None:
        """The visitor went away, or the answer ran out of time: what was written is kept, and
        a cut-off answer says so in the thread and to the agent."""
        run = context.run
        if run is None or datetime.now(UTC) < run.claimed_until - CLAIM_MARGIN:
            await super().handle_stream_cancelled(thread, pending_items, context)
            return
        for item in pending_items:
            if isinstance(item, AssistantMessageItem) and any(part.text.strip() for part in item.content):
                item.content.append(AssistantMessageContent(text=f"\n\n{CUT_OFF}"))
                await self.store.add_thread_item(thread.id, item, context=context)
        await self.store.add_thread_item(
            thread.id,
            SDKHiddenContextItem(
                thread_id=thread.id,
                created_at=datetime.now(UTC),
                id=self.store.generate_item_id("sdk_hidden_context", thread, context),
                content="The previous answer took too long and was stopped; the visitor may ask again.",
            ),
            context=context,
        )

    async def add_feedback(
        self, thread_id: str, item_ids: list[str], feedback: FeedbackKind, context: ChatKitContext
    ) -> None:
        await database(
            feedback_save,
            visitor_id=context.visitor_id,
            thread_id=thread_id,
            item_ids=item_ids,
            kind=feedback,
        )

    def _serialize(self, obj: BaseModel) -> bytes:
        # The SDK stamps what it creates with naive local times; a browser would read those as
        # its own local time. Sent as UTC, as the stored items are.
        return super()._serialize(_aware_times(obj))

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
            transcript = await database(
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
    title_length = char_limit(ChatKitThread, "title")
    if isinstance(request, ThreadsUpdateReq) and len(request.params.title) > title_length:
        raise InvalidChatKitRequest(
            f"Invalid ChatKit request. params.title: at most {title_length} characters."
        )
    # The widget names the items of one answer; more than a page of them is not feedback.
    if isinstance(request, ItemsFeedbackReq) and not 0 < len(request.params.item_ids) <= MAX_PAGE_SIZE:
        raise InvalidChatKitRequest(
            f"Invalid ChatKit request. params.item_ids: from 1 to {MAX_PAGE_SIZE} items."
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


def _aware_times(model: BaseModel) -> BaseModel:
    """The model with every naive datetime in it (the SDK's local times) made aware, in UTC."""
    updates: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, datetime) and value.tzinfo is None:
            updates[name] = value.astimezone(UTC)
        elif isinstance(value, BaseModel):
            updates[name] = _aware_times(value)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            updates[name] = [
                _aware_times(entry) if isinstance(entry, BaseModel) else entry for entry in value
            ]
    return model.model_copy(update=updates) if updates else model


def _error_chunk(message: str | None = None) -> bytes:
    if message:
        event = ErrorEvent(code="custom", message=message, allow_retry=True)
    else:
        event = ErrorEvent(code=ErrorCode.STREAM_ERROR, allow_retry=True)
    return b"data: " + event.model_dump_json(exclude_none=True).encode() + b"\n\n"


@dataclass(frozen=True)
class _Finished:
    error: BaseException | None = None


async def _bounded(
    events: AsyncIterator[bytes], *, deadline: float, heartbeat: float
) -> AsyncGenerator[bytes, None]:
    """The answer's events, cut at `deadline` (loop time), with a heartbeat while it is silent.

    The events are produced by a task of their own, so that the SDK's generators run start to
    end in one task (their context variables need that) and can be cancelled as a whole: when
    the deadline passes, and when whoever reads this stops (the visitor went away).
    """
    queue: asyncio.Queue[bytes | _Finished] = asyncio.Queue(maxsize=64)

    async def produce() -> None:
        try:
            async with asyncio.timeout_at(deadline):
                async for chunk in events:
                    await queue.put(chunk)
        except TimeoutError:
            await queue.put(_error_chunk(TIMED_OUT))
            await queue.put(_Finished())
        except Exception as exc:
            await queue.put(_Finished(exc))
        else:
            await queue.put(_Finished())

    producer = asyncio.create_task(produce())
    try:
        while True:
            # Not asyncio.wait_for: on Python 3.11 it can swallow the cancellation that says the
            # visitor went away, when a chunk arrives at the same moment.
            try:
                async with asyncio.timeout(heartbeat):
                    chunk = await queue.get()
            except TimeoutError:
                yield HEARTBEAT
                continue
            if isinstance(chunk, _Finished):
                if chunk.error is not None:
                    raise chunk.error
                return
            yield chunk
    finally:
        producer.cancel()
        # The run's own clean-up (storing what was written, closing the model call) finishes.
        with suppress(asyncio.CancelledError):
            await producer


async def _answer(
    first: bytes, events: AsyncGenerator[bytes, None], finish: Callable[[], Awaitable[None]]
) -> AsyncIterator[bytes]:
    """The stream from its first event; a failure from here on can only be told in it."""
    try:
        yield first
        try:
            async for chunk in events:
                yield chunk
        except Exception:
            logger.exception("The ChatKit stream failed after it started")
            yield _error_chunk()
    finally:
        # Stops the run if it still goes (the visitor went away), then frees the thread.
        await events.aclose()
        await finish()


def _claim_for(request: Any) -> str | None:
    """The existing thread whose answer the request runs, if it runs one."""
    return request.params.thread_id if isinstance(request, _RUNS_ON_A_THREAD) else None


def _refuse_unless_served() -> None:
    if not self_hosted():
        raise NotServedInThisMode(
            "Not found: this service runs managed ChatKit (CHATKIT_MODE=managed); the widget gets "
            "a client secret from /api/chatkit/session."
        )
    missing = settings_missing(names=CHATKIT_SETTINGS)
    if missing:
        raise NotConfigured(missing)


async def chatkit_request_serve(
    *,
    visitor_id: str,
    client_ip: str,
    body: bytes,
    locale: str = "en",
    page_url: str = "",
    api_url: str = ChatKitContext.api_url,
    answer_seconds: float | None = None,
) -> ChatKitReply:
    """Serve one ChatKit protocol request for the visitor.

    Everything that can be refused (mode, configuration, a malformed request, another
    visitor's thread, a thread already answering) is refused with an error status before
    anything is stored. `locale` and `page_url` reach the agent as the managed workflow's
    state variables did; `api_url` is this endpoint's absolute URL, for links to files kept
    here. An answer stops after `answer_seconds` (CHATKIT_AGENT_TIMEOUT_SECONDS
    unless the host needs it shorter).
    """
    _refuse_unless_served()
    await database(rate_limit_consume, limit=CHATKIT_REQUESTS_PER_IP, subject=ip_subject(client_ip))
    request = _parse(body)
    _check_supported(request)
    if isinstance(request, (ThreadsCreateReq, ThreadsAddUserMessageReq)):
        await database(
            attachments_check_for_message,
            visitor_id=visitor_id,
            thread_id=request.params.thread_id if isinstance(request, ThreadsAddUserMessageReq) else None,
            attachment_ids=request.params.input.attachments,
        )
    server = SiteChatKitServer(await sync_to_async(agent_load)())
    seconds = answer_seconds if answer_seconds is not None else settings.CHATKIT_AGENT_TIMEOUT_SECONDS
    deadline = asyncio.get_running_loop().time() + seconds
    run = Run(claimed_until=datetime.now(UTC) + timedelta(seconds=seconds) + CLAIM_MARGIN)
    context = ChatKitContext(
        visitor_id=visitor_id,
        client_ip=client_ip,
        locale=locale,
        page_url=page_url,
        api_url=api_url,
        run=run,
    )

    async def finish() -> None:
        if run.thread_id is not None:
            await database(thread_run_release, thread_id=run.thread_id)

    with _refusals():
        thread_id = _claim_for(request)
        if thread_id is not None:
            if not await database(
                thread_run_claim, visitor_id=visitor_id, thread_id=thread_id, until=run.claimed_until
            ):
                raise ThreadBusy(THREAD_BUSY)
            run.thread_id = thread_id
        try:
            result = await server.process_parsed(request, context)
            if isinstance(result, NonStreamingResult):
                await finish()
                return ChatKitReply(content_type="application/json", body=result.json)
            events = _bounded(
                aiter(result), deadline=deadline, heartbeat=settings.CHATKIT_STREAM_HEARTBEAT_SECONDS
            )
            # Until the first event the request can still fail with an error status.
            first = await anext(events)
        except BaseException:
            await finish()
            raise
    return ChatKitReply(content_type="text/event-stream", stream=_answer(first, events, finish))


async def chatkit_loop_end() -> None:
    """What a request served on an event loop of its own (under WSGI) does before the loop
    ends: let the titles being written finish shortly or cancel them, then close the loop's
    OpenAI client and its connections."""
    await titles_settle()
    await openai_gateway.async_client_close()
