"""Input validation shared by the transcript endpoint and the widget's "send recap" action."""

import re
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import DomainNameValidator, EmailValidator, RegexValidator
from django.utils.encoding import punycode
from rest_framework import serializers

from chatkit_api.mail import header_safe
from chatkit_api.rendering import Lead

# A language tag as browsers send it (`fr`, `en-GB`, `zh_Hant_TW`).
LOCALE_PATTERN = re.compile(r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$")


def single_line(value: str) -> None:
    # The same characters the mail layer refuses in a header, refused here with a clear 400.
    if not header_safe(value):
        raise serializers.ValidationError(
            "Must be a single line, without control characters or encoded words (=?...?=)."
        )


class PlainEmailValidator(EmailValidator):
    """Django's email checks, on plain addresses only, with the domain checked as it is sent.

    Quotes, brackets, backslashes and whitespace are legal in some addresses (quoted local
    parts, IP literals) but no visitor needs them, and mail parsers disagree about them:
    `"victim@evil.example,"@shop.example` reads as two addresses to some.

    Django matches the domain against a pattern spanning most of Unicode, which takes about
    20 ms to compile: the first transcript after a cold start paid for it. Here the domain
    is turned into its IDNA form first, as Django does when it writes the address into a
    mail, and matched against the same pattern without the non-ASCII range. A domain that
    has no IDNA form could not be mailed anyway.
    """

    unplain_message = "Enter a plain address such as name@example.com."
    _unplain = re.compile(r'["\[\]\\\s\x00-\x1f\x7f]')
    _ascii_domain = re.compile(
        "^"
        + (EmailValidator.hostname_re + EmailValidator.domain_re + EmailValidator.tld_no_fqdn_re).replace(
            DomainNameValidator.ul, ""
        )
        + r"\Z",
        re.IGNORECASE,
    )

    def __call__(self, value: str | None) -> None:
        if value and (self._unplain.search(value) or not header_safe(value)):
            raise DjangoValidationError(self.unplain_message, code=self.code)
        if value and not value.rpartition("@")[0].isascii():
            # Django's pattern for the name is ASCII, but matched ignoring case it also takes
            # the four letters whose case folds into ASCII (U+0130, U+0131, U+017F, U+212A); SES
            # refuses them all.
            raise DjangoValidationError(self.message, code=self.code)
        super().__call__(value)

    def validate_domain_part(self, domain_part: str) -> bool:
        try:
            ascii_domain = punycode(domain_part)
        except UnicodeError:
            return False
        return bool(self._ascii_domain.match(ascii_domain))


class PlainEmailField(serializers.EmailField):
    """DRF's EmailField (an email in the API schema), validated by PlainEmailValidator.

    A valid address comes out with its domain in IDNA form: SES takes ASCII addresses only,
    and the envelope gets the address as given.
    """

    def __init__(self, **kwargs: Any) -> None:
        # CharField's set-up only: EmailField's would add Django's EmailValidator.
        serializers.CharField.__init__(self, **kwargs)
        self.validators.append(PlainEmailValidator(message=self.error_messages["invalid"]))

    def run_validation(self, data: Any = serializers.empty) -> Any:
        address = super().run_validation(data)
        if not address:
            return address
        local_part, _, domain = address.rpartition("@")
        return f"{local_part}@{punycode(domain)}"


class StringOnlyField(serializers.CharField):
    """A CharField that refuses numbers, which DRF's turns into text: the schema says string."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


def text_field(
    max_length: int,
    help_text: str,
    *,
    multiline: bool = False,
    validators: tuple[Any, ...] = (),
    strings_only: bool = False,
) -> serializers.CharField:
    # Most fields take a number as its text, as the old handler did (a phone number sent as
    # one); a field that is never a number refuses it.
    field = StringOnlyField if strings_only else serializers.CharField
    return field(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=max_length,
        validators=([] if multiline else [single_line]) + list(validators),
        help_text=help_text
        if multiline
        else f"{help_text} One line, without control characters or encoded words (`=?...?=`).",
    )


def clean(data: dict[str, Any], key: str, default: str = "") -> str:
    return data.get(key) or default


class LeadSerializer(serializers.Serializer):
    """The visitor's details that go at the top of a transcript mail."""

    email = PlainEmailField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=254,
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
    pageUrl = text_field(  # noqa: N815 - the frontend's field name
        2000, "The page the visitor was on.", strings_only=True
    )


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
