"""Input validation shared by the transcript endpoint and the widget's "send recap" action."""

import re
from typing import Any

from django.core.validators import RegexValidator
from rest_framework import serializers

from chatkit_api.mail import header_safe
from chatkit_api.rendering import Lead


def single_line(value: str) -> None:
    # The same characters the mail layer refuses in a header, refused here with a clear 400.
    if not header_safe(value):
        raise serializers.ValidationError("Must be a single line without control characters.")


# Quotes, brackets, backslashes and whitespace are legal in some addresses (quoted local
# parts, IP literals) but no visitor needs them, and mail parsers disagree about them:
# `"victim@evil.example,"@shop.example` reads as two addresses to some.
_UNPLAIN_EMAIL = re.compile(r'["\[\]\\\s\x00-\x1f\x7f]')


def plain_email(value: str) -> None:
    if _UNPLAIN_EMAIL.search(value):
        raise serializers.ValidationError("Enter a plain address such as name@example.com.")


def text_field(
    max_length: int, help_text: str, *, multiline: bool = False, validators: tuple[Any, ...] = ()
) -> serializers.CharField:
    return serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=max_length,
        validators=([] if multiline else [single_line]) + list(validators),
        help_text=help_text,
    )


def clean(data: dict[str, Any], key: str, default: str = "") -> str:
    return data.get(key) or default


class LeadSerializer(serializers.Serializer):
    """The visitor's details that go at the top of a transcript mail."""

    email = serializers.EmailField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=254,
        validators=[plain_email],
        help_text="The visitor's email: the mail's Reply-To, and where a recap copy goes.",
    )
    name = text_field(200, "The visitor's name; in the subject.")
    phone = text_field(50, "The visitor's phone number.")
    vehicle = text_field(200, "The vehicle the request is about.")
    details = text_field(5000, "Anything else the visitor wrote; may span lines.", multiline=True)
    mode = text_field(
        32,
        "`quote` (default), or `recap` to also mail the visitor a copy (needs `ALLOW_USER_RECAP`).",
        validators=(RegexValidator(r"^[A-Za-z0-9_-]+$", "Letters, digits, - and _ only."),),
    )
    pageUrl = text_field(2000, "The page the visitor was on.")  # noqa: N815 - the frontend's field name


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
