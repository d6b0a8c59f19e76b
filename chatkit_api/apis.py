"""HTTP layer: validate the body, call one service, shape the reply."""

import re
from typing import Any

from django.core.validators import RegexValidator
from django.http import HttpRequest, JsonResponse
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chatkit_api.authentication import TranscriptTokenAuthentication, VisitorCookieAuthentication
from chatkit_api.mail import header_safe
from chatkit_api.rendering import Lead
from chatkit_api.services import chatkit_session_create, transcript_send
from chatkit_api.visitors import client_ip, visitor_from_request, visitor_new_id, visitor_set_cookie


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


def _text(
    max_length: int, *, multiline: bool = False, validators: tuple[Any, ...] = ()
) -> serializers.CharField:
    return serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        max_length=max_length,
        validators=([] if multiline else [single_line]) + list(validators),
    )


def _clean(data: dict[str, Any], key: str, default: str = "") -> str:
    return data.get(key) or default


# Printable ASCII without spaces, as the keys clients generate (UUIDs, random tokens) are.
_IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return ""
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise serializers.ValidationError(
            {"Idempotency-Key": ["Must be 1 to 255 printable ASCII characters without spaces."]}
        )
    return key


class SessionApi(APIView):
    """`POST /api/chatkit/session`: a ChatKit client secret for this visitor."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    class InputSerializer(serializers.Serializer):
        # A `user` field may arrive from older frontends; it is ignored on purpose, because
        # the ChatKit user must come from the signed cookie, never from the request.
        locale = _text(
            35,
            validators=(RegexValidator(r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$", "Not a locale."),),
        )
        pageUrl = _text(2000)  # noqa: N815 - the frontend's field name

    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        visitor_id = visitor_from_request(request) or visitor_new_id()
        session = chatkit_session_create(
            visitor_id=visitor_id,
            locale=_clean(data, "locale"),
            page_url=_clean(data, "pageUrl"),
            client_ip=client_ip(request),
        )
        response = Response({"client_secret": session.client_secret, "expires_at": session.expires_at})
        visitor_set_cookie(response, visitor_id)
        return response


class TranscriptApi(APIView):
    """`POST /api/chatkit/transcript`: record a thread's transcript and mail it."""

    authentication_classes = [TranscriptTokenAuthentication, VisitorCookieAuthentication]
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        threadId = serializers.CharField(  # noqa: N815 - the frontend's field name
            max_length=128,
            validators=[RegexValidator(r"^[A-Za-z0-9_-]+$", "Not a thread id.")],
        )
        email = serializers.EmailField(
            required=False, allow_blank=True, allow_null=True, max_length=254, validators=[plain_email]
        )
        name = _text(200)
        phone = _text(50)
        vehicle = _text(200)
        details = _text(5000, multiline=True)
        mode = _text(
            32,
            validators=(RegexValidator(r"^[A-Za-z0-9_-]+$", "Letters, digits, - and _ only."),),
        )
        pageUrl = _text(2000)  # noqa: N815 - the frontend's field name

    def post(self, request: Request) -> Response:
        idempotency_key = _idempotency_key(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        transcript = transcript_send(
            caller=request.user,
            idempotency_key=idempotency_key,
            thread_id=data["threadId"],
            lead=Lead(
                name=_clean(data, "name"),
                email=_clean(data, "email"),
                phone=_clean(data, "phone"),
                vehicle=_clean(data, "vehicle"),
                details=_clean(data, "details"),
                mode=_clean(data, "mode", "quote"),
                page_url=_clean(data, "pageUrl"),
            ),
        )
        return Response({"ok": True, "id": transcript.id})


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"error": "Not found."}, status=404)


def server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"error": "Internal server error."}, status=500)
