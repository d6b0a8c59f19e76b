"""HTTP layer: validate the body, call one service, shape the reply."""

import json
import re
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_ses.views import SESEventWebhookView
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chatkit_api import sns
from chatkit_api.authentication import TranscriptTokenAuthentication, VisitorCookieAuthentication
from chatkit_api.exceptions import NotConfigured
from chatkit_api.negotiation import FirstParserAndRenderer
from chatkit_api.rendering import Lead
from chatkit_api.services import chatkit_session_create, ses_notification_record, transcript_send
from chatkit_api.visitors import visitor_from_request, visitor_new_id, visitor_set_cookie

# Characters that end a line somewhere: in a mail header any of them could start a new
# header (CR/LF), truncate it (NUL) or be turned into a line break by a mail client.
_LINE_BREAKS = re.compile(r"[\r\n\x00\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def single_line(value: str) -> None:
    if _LINE_BREAKS.search(value):
        raise serializers.ValidationError("Must be a single line (no line breaks or NUL).")


def _text(
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


def _clean(data: dict[str, Any], key: str, default: str = "") -> str:
    return data.get(key) or default


class ChatKitApiView(APIView):
    content_negotiation_class = FirstParserAndRenderer


class SessionApi(ChatKitApiView):
    """`POST /api/chatkit/session`: a ChatKit client secret for this visitor."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    class InputSerializer(serializers.Serializer):
        # A `user` field may arrive from older frontends; it is ignored on purpose, because
        # the ChatKit user must come from the signed cookie, never from the request.
        locale = _text(
            35,
            "The visitor's language, e.g. `fr` or `en-GB`; the workflow's `locale` (default `en`).",
            validators=(RegexValidator(r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*$", "Not a locale."),),
        )
        pageUrl = _text(  # noqa: N815 - the frontend's field name
            2000, "The page the chat is on; the workflow's `page_url`."
        )

    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        visitor_id = visitor_from_request(request) or visitor_new_id()
        session = chatkit_session_create(
            visitor_id=visitor_id,
            locale=_clean(data, "locale"),
            page_url=_clean(data, "pageUrl"),
        )
        response = Response({"client_secret": session.client_secret, "expires_at": session.expires_at})
        visitor_set_cookie(response, visitor_id)
        return response


class TranscriptApi(ChatKitApiView):
    """`POST /api/chatkit/transcript`: record a thread's transcript and mail it."""

    authentication_classes = [TranscriptTokenAuthentication, VisitorCookieAuthentication]
    permission_classes = [IsAuthenticated]

    class InputSerializer(serializers.Serializer):
        threadId = serializers.CharField(  # noqa: N815 - the frontend's field name
            max_length=128,
            validators=[RegexValidator(r"^[A-Za-z0-9_-]+$", "Not a thread id.")],
            help_text="The ChatKit thread to mail, e.g. from ChatKit's `chatkit.thread.change` event.",
        )
        email = serializers.EmailField(
            required=False,
            allow_blank=True,
            allow_null=True,
            max_length=254,
            help_text="The visitor's email: the mail's Reply-To, and where a recap copy goes.",
        )
        name = _text(200, "The visitor's name; in the subject.")
        phone = _text(50, "The visitor's phone number.")
        vehicle = _text(200, "The vehicle the request is about.")
        details = _text(5000, "Anything else the visitor wrote; may span lines.", multiline=True)
        mode = _text(
            32,
            "`quote` (default), or `recap` to also mail the visitor a copy (needs `ALLOW_USER_RECAP`).",
            validators=(RegexValidator(r"^[A-Za-z0-9_-]+$", "Letters, digits, - and _ only."),),
        )
        pageUrl = _text(2000, "The page the visitor was on.")  # noqa: N815 - the frontend's field name

    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        transcript = transcript_send(
            caller=request.user,
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


class SesNotificationsWebhook(SESEventWebhookView):
    """`POST /api/chatkit/ses-notifications`: SES notifications from an SNS HTTPS subscription.

    django-ses's webhook reads the body, checks the signature and the topic, and confirms
    the subscription; deliveries, bounces and complaints are recorded here.
    """

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS:
            error = NotConfigured(["SES_NOTIFICATION_TOPIC_ARNS"])
            return JsonResponse({"error": error.message, **error.extra}, status=error.status_code)
        try:
            message = json.loads(request.body)
        except ValueError:
            message = None
        if isinstance(message, dict) and not sns.sns_topic_trusted(message):
            # Checked before django-ses checks the signature, which may download a certificate.
            return JsonResponse({"error": "Untrusted topic."}, status=400)
        response = super().post(request, *args, **kwargs)
        if response.status_code == 400:
            # django-ses states the reason as plain text; this API answers JSON.
            return JsonResponse({"error": response.content.decode()}, status=400)
        return response

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return JsonResponse({"error": "Method not allowed."}, status=405, headers={"Allow": "POST"})

    def verify_event_message(self, notification: Any) -> bool:
        return sns.sns_signature_valid(notification)

    def verify_event_topic(self, notification: Any) -> bool:
        return sns.sns_topic_trusted(notification)

    def handle_delivery(self, notification: dict[str, Any], message: dict[str, Any]) -> None:
        ses_notification_record(notification=message, sns_message_id=str(notification.get("MessageId", "")))

    handle_bounce = handle_delivery
    handle_complaint = handle_delivery


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"error": "Not found."}, status=404)


def server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"error": "Internal server error."}, status=500)
