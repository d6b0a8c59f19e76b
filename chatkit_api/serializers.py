"""Input validation shared by the transcript endpoint and the widget's "send recap" action."""

import re
from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers

from chatkit_api.rendering import Lead

# Characters that end a line somewhere: in a mail header any of them could start a new
# header (CR/LF), truncate it (NUL) or be turned into a line break by a mail client.
_LINE_BREAKS = re.compile(r"[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def single_line(value: str) -> None:
    if _LINE_BREAKS.search(value):
        raise serializers.ValidationError("Must be a single line (no line breaks or NUL).")


def text_field(
    max_length: int, *, multiline: bool = False, validators: tuple[Any, ...] = ()
) -> serializers.CharField:
    return serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=max_length,
        validators=([] if multiline else [single_line]) + list(validators),
    )


def clean(data: dict[str, Any], key: str, default: str = "") -> str:
    return data.get(key) or default


class LeadSerializer(serializers.Serializer):
    """The visitor's details that go at the top of a transcript mail."""

    email = serializers.EmailField(required=False, allow_blank=True, allow_null=True, max_length=254)
    name = text_field(200)
    phone = text_field(50)
    vehicle = text_field(200)
    details = text_field(5000, multiline=True)
    mode = text_field(
        32,
        validators=(RegexValidator(r"^[A-Za-z0-9_-]+$", "Letters, digits, - and _ only."),),
    )
    pageUrl = text_field(2000)  # noqa: N815 - the frontend's field name


def lead_from(data: dict[str, Any]) -> Lead:
    """The Lead in validated LeadSerializer data; absent and null fields are empty."""
    return Lead(
        name=clean(data, "name"),
        email=clean(data, "email"),
        phone=clean(data, "phone"),
        vehicle=clean(data, "vehicle"),
        details=clean(data, "details"),
        mode=clean(data, "mode", "quote"),
        page_url=clean(data, "pageUrl"),
    )
