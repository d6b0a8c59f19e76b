"""Turn a ChatKit thread and the visitor's lead details into the transcript email.

The plain-text body keeps the old handler's layout (lead lines, `---`, the conversation)
so staff inbox filters keep working; every item type is rendered on purpose, and a type
this code does not know yet is shown by name rather than dropped. The visitor's thumbs up or
down on an answer (self-hosted threads) is shown beside it.
"""

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

from chatkit_api.models import FeedbackKind

logger = logging.getLogger(__name__)

# Long tool arguments, outputs and widget texts are cut to this many characters.
SNIPPET_LIMIT = 500
# Widget fields that carry text a person reads.
_WIDGET_TEXT_KEYS = ("title", "value", "text", "label")


@dataclass(frozen=True)
class Lead:
    name: str = ""
    email: str = ""
    phone: str = ""
    vehicle: str = ""
    details: str = ""
    mode: str = "quote"
    page_url: str = ""


@dataclass(frozen=True)
class Entry:
    """One rendered thread item: who or what it is, when, and its readable text."""

    kind: str
    label: str
    time: str
    text: str
    # The kind of feedback the visitor gave the item with ChatKit's thumbs, if any.
    feedback: str = ""


@dataclass(frozen=True)
class RenderedTranscript:
    subject: str
    text: str
    html: str
    item_count: int
    # Items the thread held that could not be read (shown as such in the mail).
    unreadable: int = 0


def transcript_subject(lead: Lead) -> str:
    return f"[Chat] {lead.name or 'Website visitor'} - {lead.mode}"


def size_text(size: int) -> str:
    """A file's size as people read it: `840 bytes`, `120 KB`, `2.4 MB`."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"


def _attachment_text(attachment: dict[str, Any]) -> str:
    """`photo.png (image/png, 120 KB)`: a managed thread's attachments have no size."""
    name = attachment.get("name") or attachment.get("id") or "unnamed"
    facts = [attachment.get("mime_type") or "unknown type"]
    size = (attachment.get("metadata") or {}).get("size")
    if isinstance(size, int) and not isinstance(size, bool):
        facts.append(size_text(size))
    return f"{name} ({', '.join(facts)})"


def _snippet(value: str) -> str:
    value = value.strip()
    return value if len(value) <= SNIPPET_LIMIT else value[: SNIPPET_LIMIT - 1] + "…"


def _format_time(value: Any, zone: ZoneInfo) -> str:
    """Managed threads give Unix seconds; self-hosted items carry ISO 8601 strings."""
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return "time unknown"
        moment = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, tz=UTC)
    else:
        return "time unknown"
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _as_text(value: Any) -> str:
    """Tool arguments and outputs: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _quote(text: str) -> list[str]:
    return [f"> {line}" for line in text.strip().splitlines()]


def _user_message_text(item: dict[str, Any]) -> str:
    # Managed threads carry a quote as a `quoted_text` part; self-hosted ones as a field.
    lines: list[str] = _quote(item.get("quoted_text") or "")
    inline: list[str] = []
    for part in item.get("content") or []:
        text = part.get("text") or ""
        if part.get("type") == "quoted_text":
            lines.extend(_quote(text))
        elif part.get("type") == "input_tag":
            # An @-mention of something on the site, shown as the visitor saw it.
            inline.append(f"@{text}")
        else:
            inline.append(text)
    if "".join(inline).strip():
        lines.append("".join(inline).strip())
    attachments = [_attachment_text(attachment) for attachment in item.get("attachments") or []]
    if attachments:
        lines.append("Attachments: " + ", ".join(attachments))
    return "\n".join(lines)


def _source_name(source: Any) -> str | None:
    if not isinstance(source, dict):
        return None
    return source.get("url") or source.get("filename") or source.get("title")


def _assistant_message_text(item: dict[str, Any]) -> str:
    texts: list[str] = []
    sources: list[str] = []
    for part in item.get("content") or []:
        text = (part.get("text") or "").strip()
        if text:
            texts.append(text)
        for annotation in part.get("annotations") or []:
            cited = _source_name(annotation.get("source"))
            if cited and cited not in sources:
                sources.append(cited)
    if sources:
        texts.append("Sources: " + ", ".join(sources))
    return "\n".join(texts)


def _widget_texts(node: Any, found: list[str]) -> None:
    if isinstance(node, dict):
        for key in _WIDGET_TEXT_KEYS:
            value = node.get(key)
            if isinstance(value, str) and value.strip():
                found.append(value.strip())
        for value in node.values():
            if isinstance(value, (dict, list)):
                _widget_texts(value, found)
    elif isinstance(node, list):
        for child in node:
            _widget_texts(child, found)


def _widget_text(item: dict[str, Any]) -> tuple[str, str]:
    # Managed threads carry the widget as a JSON string, self-hosted ones as an object.
    widget = item.get("widget")
    if isinstance(widget, str):
        try:
            widget = json.loads(widget)
        except ValueError:
            return "Widget", _snippet(widget)
    kind = widget.get("type") if isinstance(widget, dict) else None
    label = f"Widget ({kind})" if isinstance(kind, str) and kind else "Widget"
    # A self-hosted widget may come with the text its author meant to be copied from it.
    copy_text = item.get("copy_text")
    if isinstance(copy_text, str) and copy_text.strip():
        return label, _snippet(copy_text)
    found: list[str] = []
    _widget_texts(widget, found)
    return label, _snippet(" · ".join(found)) if found else "(no text)"


def _client_tool_call_text(item: dict[str, Any]) -> str:
    name = item.get("name") or "unnamed tool"
    status = (item.get("status") or "unknown").replace("_", " ")
    lines = [f"{name} ({status})"]
    if item.get("arguments"):
        lines.append("Arguments: " + _snippet(_as_text(item["arguments"])))
    if item.get("output") not in (None, ""):
        lines.append("Output: " + _snippet(_as_text(item["output"])))
    return "\n".join(lines)


def _task_line(task: dict[str, Any]) -> str:
    """One task: managed threads name its parts heading/summary, self-hosted ones title/content."""
    heading = (task.get("heading") or task.get("title") or task.get("title_query") or "").strip()
    summary = (task.get("summary") or task.get("content") or "").strip()
    kind = task.get("task_type") or task.get("type") or "task"
    text = " - ".join(part for part in (heading, summary) if part) or "(no description)"
    queries = [query for query in task.get("queries") or [] if isinstance(query, str)]
    if queries:
        text += " (searched: " + "; ".join(queries) + ")"
    sources = [name for name in map(_source_name, task.get("sources") or []) if name]
    if sources:
        text += " (sources: " + ", ".join(sources) + ")"
    return f"[{kind}] {_snippet(text)}"


def _workflow_text(item: dict[str, Any]) -> tuple[str, str]:
    workflow = item.get("workflow") or {}
    summary = workflow.get("summary") or {}
    # Without a summary a workflow is a list of tasks, as a managed task group is.
    label = "Reasoning" if workflow.get("type") == "reasoning" else "Workflow" if summary else "Tasks"
    lines: list[str] = []
    if summary.get("title"):
        lines.append(str(summary["title"]))
    elif isinstance(summary.get("duration"), int):
        lines.append(f"Worked for {summary['duration']} s")
    lines.extend(_task_line(task) for task in workflow.get("tasks") or [] if isinstance(task, dict))
    return label, "\n".join(lines) or "(no tasks)"


def _structured_input_text(item: dict[str, Any]) -> str:
    lines: list[str] = []
    for question in item.get("inputs") or []:
        answer = question.get("answer") or {}
        if answer.get("values"):
            reply = ", ".join(str(value) for value in answer["values"])
        else:
            reply = "(skipped)" if answer.get("skipped") else "(not answered)"
        lines.append(f"{question.get('question') or 'Question'}: {reply}")
    return "\n".join(lines) or "(no questions)"


def _generated_image_text(item: dict[str, Any]) -> str:
    url = (item.get("image") or {}).get("url") or ""
    # An image the SDK inlined as a data: URL would fill the mail with base64.
    return url if url.startswith(("https://", "http://")) else "(image not included)"


# Self-hosted bookkeeping the visitor never sees: a turn marker, and context kept for the
# model (e.g. "the visitor sent a recap"). Leaving them out keeps the mail what the visitor read.
_NOT_SHOWN = {"end_of_turn", "hidden_context_item", "sdk_hidden_context"}
# A managed item that `import_managed_threads` could not convert is kept whole under this key
# of a hidden context item (see chatkit_api.managed_items); the mail shows it as it was.
KEPT_MANAGED_ITEM = "managed_item"


def _kept_managed_item(item: dict[str, Any]) -> dict[str, Any] | None:
    content = item.get("content")
    if item.get("type") == "hidden_context_item" and isinstance(content, dict):
        kept = content.get(KEPT_MANAGED_ITEM)
        return kept if isinstance(kept, dict) else None
    return None


def _unknown_text(item: dict[str, Any]) -> str:
    found: list[str] = []
    _widget_texts(item, found)
    return _snippet(" · ".join(found)) if found else "(not shown)"


def _entry(item: dict[str, Any], zone: ZoneInfo) -> Entry | None:
    kept = _kept_managed_item(item)
    if kept is not None:
        return _entry(kept, zone)
    raw_type = str(item.get("type") or "unknown")
    kind = raw_type.removeprefix("chatkit.")
    created_at = _format_time(item.get("created_at"), zone)
    if kind in _NOT_SHOWN:
        return None
    if kind == "user_message":
        return Entry(kind, "User", created_at, _user_message_text(item) or "(empty message)")
    if kind == "assistant_message":
        return Entry(kind, "Assistant", created_at, _assistant_message_text(item) or "(empty message)")
    if kind == "widget":
        label, text = _widget_text(item)
        return Entry(kind, label, created_at, text)
    if kind == "client_tool_call":
        return Entry(kind, "Tool call", created_at, _client_tool_call_text(item))
    if kind == "task":
        # Self-hosted task items wrap the task in a `task` object.
        task = item.get("task")
        return Entry(kind, "Task", created_at, _task_line(task if isinstance(task, dict) else item))
    if kind == "task_group":
        tasks = [_task_line(task) for task in item.get("tasks") or []]
        return Entry(kind, "Tasks", created_at, "\n".join(tasks) or "(no tasks)")
    if kind == "workflow":
        label, text = _workflow_text(item)
        return Entry(kind, label, created_at, text)
    if kind == "structured_input":
        return Entry(kind, "Questions", created_at, _structured_input_text(item))
    if kind == "generated_image":
        return Entry(kind, "Image", created_at, _generated_image_text(item))
    return Entry(kind, f"Unsupported item ({raw_type})", created_at, _unknown_text(item))


def _lead_lines(lead: Lead) -> list[tuple[str, str]]:
    return [
        ("Mode", lead.mode),
        ("Name", lead.name),
        ("Email", lead.email),
        ("Phone", lead.phone),
        ("Vehicle", lead.vehicle),
        ("Details", lead.details),
        ("Page", lead.page_url),
    ]


_UNREADABLE = "unreadable"


def _entry_or_unreadable(item: Any, zone: ZoneInfo) -> Entry | None:
    """The item's entry; one that says so for an item not shaped as its type should be."""
    try:
        return _entry(item, zone)
    except (AttributeError, KeyError, TypeError, ValueError):
        kind = str(item.get("type")) if isinstance(item, dict) else type(item).__name__
        # The type only: the item holds the visitor's words.
        logger.warning("A thread item of type %.80r could not be read", kind)
        return Entry(_UNREADABLE, "Unreadable item", "time unknown", f"(a {kind} item)")


_FEEDBACK_LABELS: dict[str, str] = dict(FeedbackKind.choices)


def _with_feedback(entry: Entry | None, item: Any, feedback: Mapping[str, str]) -> Entry | None:
    if entry is None or not isinstance(item, dict):
        return entry
    kind = feedback.get(str(item.get("id")))
    return replace(entry, feedback=kind) if kind else entry


def _entries(items: Iterable[dict[str, Any]], feedback: Mapping[str, str]) -> list[Entry]:
    zone = ZoneInfo(settings.TIME_ZONE)
    entries = (_with_feedback(_entry_or_unreadable(item, zone), item, feedback) for item in items)
    return [entry for entry in entries if entry is not None]


def _feedback_said(entry: Entry) -> str:
    return f"Visitor feedback: {_FEEDBACK_LABELS.get(entry.feedback, entry.feedback)}"


def _feedback_line(entry: Entry) -> str:
    return f"\n{_feedback_said(entry)}" if entry.feedback else ""


def _conversation(entries: list[Entry]) -> str:
    if not entries:
        return "(The conversation has no messages.)"
    return "\n\n".join(
        f"[{entry.time}] {entry.label}: {entry.text}{_feedback_line(entry)}" for entry in entries
    )


def conversation_text(items: Iterable[dict[str, Any]], *, feedback: Mapping[str, str] | None = None) -> str:
    """A thread's items as the plain-text conversation of a transcript mail; `feedback` maps
    an item's id to the kind of feedback the visitor gave it."""
    return _conversation(_entries(items, feedback or {}))


# Written for a lead field the visitor left empty: staff inbox filters match these header
# lines, so every one of the old handler's seven is always there.
NOT_GIVEN = "—"


def _header_value(value: str) -> str:
    # A multi-line Details continues indented, so that none of its lines reads as a header line.
    return value.replace("\n", "\n  ") if value else NOT_GIVEN


def _text_body(lead: Lead, entries: list[Entry]) -> str:
    header = "\n".join(f"{label}: {_header_value(value)}" for label, value in _lead_lines(lead))
    return f"{header}\n\n---\n\n{_conversation(entries)}\n"


# Border colour of each entry in the HTML mail: visitor, assistant, everything else.
_ENTRY_COLOURS = {"user_message": "#1a73e8", "assistant_message": "#188038"}
# Colour of the visitor's feedback, in the mail and in the admin: thumbs down stands out.
_FEEDBACK_COLOURS: dict[str, str] = {FeedbackKind.NEGATIVE: "#c5221f", FeedbackKind.POSITIVE: "#188038"}


def feedback_colour(kind: str) -> str:
    """The colour the visitor's feedback of `kind` is shown in."""
    return _FEEDBACK_COLOURS.get(kind, "#5f6368")


def _html_text(text: str) -> str:
    return escape(text).replace("\n", "<br>\n")


def _feedback_html(entry: Entry) -> str:
    if not entry.feedback:
        return ""
    colour = feedback_colour(entry.feedback)
    return f' &middot; <strong style="color:{colour};">{escape(_feedback_said(entry))}</strong>'


def _conversation_html(entries: list[Entry]) -> str:
    """The conversation part of the HTML mail, every value escaped.

    Built in Python rather than in the template: a template loop over thousands of
    entries costs more than the rest of a long transcript's work together.
    """
    return "".join(
        '<div style="margin:0 0 12px;padding:8px 12px;background:#fafafa;'
        f'border-left:3px solid {_ENTRY_COLOURS.get(entry.kind, "#9aa0a6")};">'
        '<div style="font-size:12px;color:#5f6368;">'
        f'<strong style="color:#1f1f1f;">{escape(entry.label)}</strong> &middot; {escape(entry.time)}'
        f"{_feedback_html(entry)}</div>"
        f"<div>{_html_text(entry.text)}</div></div>\n"
        for entry in entries
    )


def transcript_render(
    *, lead: Lead, items: Iterable[dict[str, Any]], feedback: Mapping[str, str] | None = None
) -> RenderedTranscript:
    """The mail for the thread's items; `feedback` maps an item's id to the kind of feedback
    the visitor gave it."""
    entries = _entries(items, feedback or {})
    subject = transcript_subject(lead)
    html = render_to_string(
        "chatkit_api/transcript_email.html",
        {
            "subject": subject,
            "lead_lines": _lead_lines(lead),
            "page_link": lead.page_url if lead.page_url.startswith(("https://", "http://")) else "",
            "conversation": mark_safe(_conversation_html(entries)),  # noqa: S308 - built from escaped parts
        },
    )
    return RenderedTranscript(
        subject=subject,
        text=_text_body(lead, entries),
        html=html,
        item_count=len(entries),
        unreadable=sum(entry.kind == _UNREADABLE for entry in entries),
    )
