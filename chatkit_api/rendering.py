"""Turn a ChatKit thread and the visitor's lead details into the transcript email.

The plain-text body keeps the old handler's layout (lead lines, `---`, the conversation)
so staff inbox filters keep working; every item type is rendered on purpose, and a type
this code does not know yet is shown by name rather than dropped.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.template.loader import render_to_string
from django.utils.safestring import mark_safe

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


@dataclass(frozen=True)
class RenderedTranscript:
    subject: str
    text: str
    html: str
    item_count: int


def transcript_subject(lead: Lead) -> str:
    return f"[Chat] {lead.name or 'Website visitor'} - {lead.mode}"


def _snippet(value: str) -> str:
    value = value.strip()
    return value if len(value) <= SNIPPET_LIMIT else value[: SNIPPET_LIMIT - 1] + "…"


def _format_time(value: Any, zone: ZoneInfo) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "time unknown"
    return datetime.fromtimestamp(value, tz=UTC).astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _user_message_text(item: dict[str, Any]) -> str:
    lines: list[str] = []
    for part in item.get("content") or []:
        text = (part.get("text") or "").strip()
        if not text:
            continue
        if part.get("type") == "quoted_text":
            lines.extend(f"> {line}" for line in text.splitlines())
        else:
            lines.append(text)
    attachments = [
        attachment.get("name") or attachment.get("id") or "unnamed"
        for attachment in item.get("attachments") or []
    ]
    if attachments:
        lines.append("Attachments: " + ", ".join(attachments))
    return "\n".join(lines)


def _assistant_message_text(item: dict[str, Any]) -> str:
    texts: list[str] = []
    sources: list[str] = []
    for part in item.get("content") or []:
        text = (part.get("text") or "").strip()
        if text:
            texts.append(text)
        for annotation in part.get("annotations") or []:
            source = annotation.get("source") or {}
            cited = source.get("url") or source.get("filename")
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
    widget = item.get("widget")
    if isinstance(widget, str):
        try:
            widget = json.loads(widget)
        except ValueError:
            return "Widget", _snippet(widget)
    found: list[str] = []
    _widget_texts(widget, found)
    kind = widget.get("type") if isinstance(widget, dict) else None
    label = f"Widget ({kind})" if isinstance(kind, str) and kind else "Widget"
    return label, _snippet(" · ".join(found)) if found else "(no text)"


def _client_tool_call_text(item: dict[str, Any]) -> str:
    name = item.get("name") or "unnamed tool"
    status = (item.get("status") or "unknown").replace("_", " ")
    lines = [f"{name} ({status})"]
    if item.get("arguments"):
        lines.append("Arguments: " + _snippet(str(item["arguments"])))
    if item.get("output"):
        lines.append("Output: " + _snippet(str(item["output"])))
    return "\n".join(lines)


def _task_line(task: dict[str, Any]) -> str:
    heading = (task.get("heading") or "").strip()
    summary = (task.get("summary") or "").strip()
    kind = task.get("task_type") or task.get("type") or "task"
    text = " - ".join(part for part in (heading, summary) if part) or "(no description)"
    return f"[{kind}] {text}"


def _entry(item: dict[str, Any], zone: ZoneInfo) -> Entry:
    raw_type = str(item.get("type") or "unknown")
    kind = raw_type.removeprefix("chatkit.")
    created_at = _format_time(item.get("created_at"), zone)
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
        return Entry(kind, "Task", created_at, _task_line(item))
    if kind == "task_group":
        tasks = [_task_line(task) for task in item.get("tasks") or []]
        return Entry(kind, "Tasks", created_at, "\n".join(tasks) or "(no tasks)")
    return Entry(kind, f"Unsupported item ({raw_type})", created_at, "(not shown)")


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


def _text_body(lead: Lead, entries: list[Entry]) -> str:
    header = "\n".join(f"{label}: {value}" for label, value in _lead_lines(lead))
    if entries:
        conversation = "\n\n".join(f"[{entry.time}] {entry.label}: {entry.text}" for entry in entries)
    else:
        conversation = "(The conversation has no messages.)"
    return f"{header}\n\n---\n\n{conversation}\n"


# Border colour of each entry in the HTML mail: visitor, assistant, everything else.
_ENTRY_COLOURS = {"user_message": "#1a73e8", "assistant_message": "#188038"}


def _html_text(text: str) -> str:
    return escape(text).replace("\n", "<br>\n")


def _conversation_html(entries: list[Entry]) -> str:
    """The conversation part of the HTML mail, every value escaped.

    Built in Python rather than in the template: a template loop over thousands of
    entries costs more than the rest of a long transcript's work together.
    """
    return "".join(
        '<div style="margin:0 0 12px;padding:8px 12px;background:#fafafa;'
        f'border-left:3px solid {_ENTRY_COLOURS.get(entry.kind, "#9aa0a6")};">'
        '<div style="font-size:12px;color:#5f6368;">'
        f'<strong style="color:#1f1f1f;">{escape(entry.label)}</strong> &middot; {escape(entry.time)}</div>'
        f"<div>{_html_text(entry.text)}</div></div>\n"
        for entry in entries
    )


def transcript_render(*, lead: Lead, items: Iterable[dict[str, Any]]) -> RenderedTranscript:
    zone = ZoneInfo(settings.TIME_ZONE)
    entries = [_entry(item, zone) for item in items]
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
        subject=subject, text=_text_body(lead, entries), html=html, item_count=len(entries)
    )
