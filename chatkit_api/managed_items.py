"""Managed ChatKit threads and items, as OpenAI's API returns them, turned into the
`openai-chatkit` types that the self-hosted store keeps.

The managed API and the Python SDK describe the same conversation in slightly different
shapes: `chatkit.` prefixed item types, Unix times, widgets and tool arguments as JSON
strings, quoted text as a content part, task groups where the SDK has workflows. An item
that does not fit any SDK type is not dropped: it is kept whole inside a hidden context
item, which the widget does not show but the transcript mail does (see `rendering`).
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chatkit.types import (
    Annotation,
    AssistantMessageContent,
    AssistantMessageItem,
    Attachment,
    ClientToolCallItem,
    CustomTask,
    FileAttachment,
    FileSource,
    HiddenContextItem,
    InferenceOptions,
    Task,
    TaskItem,
    ThoughtTask,
    ThreadItem,
    ThreadMetadata,
    ToolChoice,
    URLSource,
    UserMessageContent,
    UserMessageItem,
    UserMessageTextContent,
    Workflow,
    WorkflowItem,
)
from pydantic import TypeAdapter, ValidationError

from chatkit_api.rendering import KEPT_MANAGED_ITEM

_THREAD_ITEM: TypeAdapter[Any] = TypeAdapter(ThreadItem)


@dataclass(frozen=True)
class ConvertedItem:
    item: Any
    # False when the item did not fit an SDK type and is kept whole in a hidden context item.
    mapped: bool
    managed_type: str


def _moment(value: Any) -> datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(f"not a time: {value!r}")


def managed_thread_metadata(thread: dict[str, Any]) -> ThreadMetadata:
    """A managed thread object (`ThreadResource`) as the SDK's thread metadata."""
    return ThreadMetadata.model_validate(
        {
            "id": thread["id"],
            "title": thread.get("title") or None,
            "created_at": _moment(thread["created_at"]),
            "status": thread.get("status") or {"type": "active"},
        }
    )


def _parsed_json(value: Any) -> Any:
    """Managed items carry tool arguments, outputs and widgets as JSON text."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _user_message(item: dict[str, Any], base: dict[str, Any]) -> UserMessageItem:
    content: list[UserMessageContent] = []
    quoted = []
    for part in item.get("content") or []:
        if part.get("type") == "quoted_text":
            quoted.append(part.get("text") or "")
        else:
            content.append(UserMessageTextContent(text=part["text"]))
    # The files stay with OpenAI and go when managed ChatKit does: the messages keep their names.
    attachments: list[Attachment] = [
        FileAttachment(
            id=attachment["id"],
            name=attachment.get("name") or attachment["id"],
            mime_type=attachment.get("mime_type") or "application/octet-stream",
            thread_id=base["thread_id"],
            metadata={"imported_from": "managed", "managed_type": attachment.get("type")},
        )
        for attachment in item.get("attachments") or []
    ]
    options = item.get("inference_options") or {}
    tool_choice = options.get("tool_choice")
    return UserMessageItem(
        **base,
        content=content,
        attachments=attachments,
        quoted_text="\n".join(quoted) or None,
        inference_options=InferenceOptions(
            tool_choice=ToolChoice(id=tool_choice["id"]) if tool_choice else None,
            model=options.get("model"),
        ),
    )


def _annotation(annotation: dict[str, Any]) -> Annotation:
    source = annotation["source"]
    if source.get("type") == "url":
        return Annotation(source=URLSource(title=source["url"], url=source["url"]))
    return Annotation(source=FileSource(title=source["filename"], filename=source["filename"]))


def _assistant_message(item: dict[str, Any], base: dict[str, Any]) -> AssistantMessageItem:
    return AssistantMessageItem(
        **base,
        content=[
            AssistantMessageContent(
                text=part["text"],
                annotations=[_annotation(annotation) for annotation in part.get("annotations") or []],
            )
            for part in item.get("content") or []
        ],
    )


def _client_tool_call(item: dict[str, Any], base: dict[str, Any]) -> ClientToolCallItem:
    arguments = _parsed_json(item.get("arguments") or "{}")
    if not isinstance(arguments, dict):
        raise ValueError("tool arguments are not a JSON object")
    return ClientToolCallItem(
        **base,
        status="completed" if item.get("status") == "completed" else "pending",
        call_id=item["call_id"],
        name=item["name"],
        arguments=arguments,
        output=_parsed_json(item.get("output")),
    )


def _task(task: dict[str, Any], kind: str) -> Task:
    heading, summary = task.get("heading"), task.get("summary")
    if kind == "thought":
        return ThoughtTask(title=heading, content=summary or "")
    return CustomTask(title=heading, content=summary)


def _task_item(item: dict[str, Any], base: dict[str, Any]) -> TaskItem:
    return TaskItem(**base, task=_task(item, item.get("task_type") or "custom"))


def _task_group(item: dict[str, Any], base: dict[str, Any]) -> WorkflowItem:
    # ChatKit shows a task group as a workflow: a collapsible list of tasks.
    tasks = [_task(task, task.get("type") or "custom") for task in item.get("tasks") or []]
    return WorkflowItem(**base, workflow=Workflow(type="custom", tasks=tasks))


def _widget(item: dict[str, Any], base: dict[str, Any]) -> Any:
    return _THREAD_ITEM.validate_python({**base, "type": "widget", "widget": _parsed_json(item["widget"])})


_CONVERTERS = {
    "chatkit.user_message": _user_message,
    "chatkit.assistant_message": _assistant_message,
    "chatkit.widget": _widget,
    "chatkit.client_tool_call": _client_tool_call,
    "chatkit.task": _task_item,
    "chatkit.task_group": _task_group,
}


def _as_sdk_type(item: dict[str, Any], base: dict[str, Any]) -> Any:
    """A type the spec does not list yet but the SDK knows (e.g. `chatkit.workflow`)."""
    kind = str(item.get("type") or "").removeprefix("chatkit.")
    fields = {key: value for key, value in item.items() if key not in ("object", "type", *base)}
    return _THREAD_ITEM.validate_python({**fields, **base, "type": kind})


def managed_item_convert(item: dict[str, Any]) -> ConvertedItem:
    """One managed item (`ThreadItem` of the API) as the SDK item the self-hosted store keeps.

    Ids, thread and time are kept. What cannot be converted is kept whole, hidden from the
    widget, shown in the transcript.
    """
    managed_type = str(item.get("type") or "unknown")
    base = {"id": item["id"], "thread_id": item["thread_id"], "created_at": _moment(item["created_at"])}
    convert = _CONVERTERS.get(managed_type, _as_sdk_type)
    try:
        return ConvertedItem(convert(item, base), mapped=True, managed_type=managed_type)
    except (KeyError, TypeError, ValueError, ValidationError):
        kept = HiddenContextItem(**base, content={KEPT_MANAGED_ITEM: item})
        return ConvertedItem(kept, mapped=False, managed_type=managed_type)
