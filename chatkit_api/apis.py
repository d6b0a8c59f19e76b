"""HTTP layer: validate the body, call one service, shape the reply."""

import re
from typing import IO, Any, cast

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.handlers.asgi import ASGIRequest
from django.core.validators import RegexValidator, URLValidator
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chatkit_api.authentication import (
    TranscriptTokenAuthentication,
    VisitorCookieAuthentication,
    origin_allowed,
    origin_refusal,
)
from chatkit_api.exceptions import (
    AttachmentRefused,
    Forbidden,
    InvalidChatKitRequest,
    MethodNotAllowed,
    NotConfigured,
    RequestTooLarge,
    ServiceError,
    service_error_response,
)
from chatkit_api.negotiation import FirstParserAndRenderer
from chatkit_api.serializers import LOCALE_PATTERN, LeadSerializer, clean, lead_from, text_field
from chatkit_api.services import (
    Caller,
    chatkit_session_create,
    settings_missing,
    transcript_send,
    transcript_settings,
)
from chatkit_api.time_budget import time_left
from chatkit_api.visitors import client_ip, visitor_from_request, visitor_new_id, visitor_set_cookie

# Printable ASCII without spaces, as the keys clients generate (UUIDs, random tokens) are.
IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return ""
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise serializers.ValidationError(
            {"Idempotency-Key": ["Must be 1 to 255 printable ASCII characters without spaces."]}
        )
    return key


class ChatKitApiView(APIView):
    content_negotiation_class = FirstParserAndRenderer


class SessionApi(ChatKitApiView):
    """`POST /api/chatkit/session`: a ChatKit client secret for this visitor."""

    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    class InputSerializer(serializers.Serializer):
        # A `user` field may arrive from older frontends; it is ignored on purpose, because
        # the ChatKit user must come from the signed cookie, never from the request.
        locale = text_field(
            35,
            "The visitor's language, e.g. `fr` or `en-GB`; the workflow's `locale` (default `en`).",
            validators=(RegexValidator(LOCALE_PATTERN, "Not a locale."),),
        )
        pageUrl = text_field(  # noqa: N815 - the frontend's field name
            2000, "The page the chat is on; the workflow's `page_url`.", strings_only=True
        )

    def post(self, request: Request) -> Response:
        if request.headers.get("Origin") and not origin_allowed(request):
            # The reply sets the visitor cookie: a form on another site posting here would give
            # the visitor a new one, and with it lose their history. A call without Origin is
            # not a browser's, and carries no visitor's cookie it could replace.
            raise Forbidden(origin_refusal(request, "the session endpoint"))
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        visitor_id = visitor_from_request(request) or visitor_new_id()
        session = chatkit_session_create(
            visitor_id=visitor_id,
            locale=clean(data, "locale"),
            page_url=clean(data, "pageUrl"),
            client_ip=client_ip(request),
        )
        response = Response({"client_secret": session.client_secret, "expires_at": session.expires_at})
        visitor_set_cookie(response, visitor_id)
        return response


class TranscriptApi(ChatKitApiView):
    """`POST /api/chatkit/transcript`: record a thread's transcript and mail it."""

    authentication_classes = [TranscriptTokenAuthentication, VisitorCookieAuthentication]
    permission_classes = [IsAuthenticated]

    class InputSerializer(LeadSerializer):
        threadId = serializers.CharField(  # noqa: N815 - the frontend's field name
            max_length=128,
            validators=[RegexValidator(r"^[A-Za-z0-9_-]+$", "Not a thread id.")],
            help_text="The ChatKit thread to mail, e.g. from ChatKit's `chatkit.thread.change` event.",
        )

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # A service that cannot send says so to every caller, before asking who they are.
        missing = settings_missing(names=transcript_settings())
        if missing:
            raise NotConfigured(missing)
        super().initial(request, *args, **kwargs)

    def post(self, request: Request) -> Response:
        idempotency_key = _idempotency_key(request)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data

        transcript = transcript_send(
            # The authentication classes only ever authenticate a Caller.
            caller=cast(Caller, request.user),
            idempotency_key=idempotency_key,
            thread_id=data["threadId"],
            lead=lead_from(data),
        )
        return Response({"ok": True, "id": transcript.id})


@csrf_exempt
def ses_notifications(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """`POST /api/chatkit/ses-notifications`, see chatkit_api.ses_webhook.

    Imported on its first request: the webhook needs django-ses and boto3, which the
    session and transcript calls must not pay for at start-up.
    """
    from chatkit_api.ses_webhook import SesNotificationsWebhook

    return SesNotificationsWebhook.as_view()(request, *args, **kwargs)


# The page the widget is on, sent by the page's own `fetch` (see docs/api.md,
# "State variables"); a URL's longest length the session endpoint accepts too.
PAGE_URL_HEADER = "X-Page-URL"
PAGE_URL_MAX_LENGTH = 2000
_PAGE_URL = URLValidator(schemes=["http", "https"])


def _is_page_url(value: str) -> bool:
    try:
        _PAGE_URL(value)
    except DjangoValidationError:
        return False
    return len(value) <= PAGE_URL_MAX_LENGTH


def _request_locale(request: HttpRequest) -> str:
    """The browser's first language (ChatKit's requests carry Accept-Language), else `en`."""
    first = request.headers.get("Accept-Language", "").split(",")[0].split(";")[0].strip()
    return first if LOCALE_PATTERN.match(first) else "en"


def _request_page_url(request: HttpRequest) -> str:
    """The page from the widget's X-Page-URL header, else from the Referer, else empty.

    Browsers send only the origin as Referer to another site, so the header is the way to
    get the whole URL there. A header that is not a page URL is refused; a Referer is the
    browser's, and is only used when it is one.
    """
    page_url = request.headers.get(PAGE_URL_HEADER)
    if page_url is not None:
        if not _is_page_url(page_url):
            raise InvalidChatKitRequest(
                f"The {PAGE_URL_HEADER} header must be an http(s) URL of at most "
                f"{PAGE_URL_MAX_LENGTH} characters."
            )
        return page_url
    referer = request.headers.get("Referer", "")
    return referer if _is_page_url(referer) else ""


def _streams(request: HttpRequest) -> bool:
    # Only an ASGI server streams (a WSGI server would get the events whole, after the run);
    # a proxy that buffers is the setting's to say.
    return isinstance(request, ASGIRequest) and settings.CHATKIT_STREAM_RESPONSES


def _answer_seconds(request: HttpRequest) -> float:
    left = time_left()
    if "apig_wsgi.full_event" in request.META and left is not None:
        # Sent whole through API Gateway, which gives up after 29 to 30 s: the answer ends
        # within the request's time budget.
        return min(settings.CHATKIT_AGENT_TIMEOUT_SECONDS, left)
    return settings.CHATKIT_AGENT_TIMEOUT_SECONDS


@csrf_exempt
async def chatkit(request: HttpRequest) -> HttpResponseBase:
    """`POST /api/chatkit`: the ChatKit protocol, served here in self-hosted mode.

    An async view: under an ASGI server the ChatKit server runs on the server's event loop and
    answers stream; under WSGI (apig-wsgi on Lambda, runserver) Django runs it on a loop of the
    request's own, and the events come back whole. The visitor cookie scopes every thread; a
    browser without one gets one on its first call.
    """
    # Imported here: the ChatKit and Agents SDKs take about a second to import, which a
    # managed deployment should not pay at every cold start.
    from chatkit_api.chatkit_server import chatkit_loop_end

    if isinstance(request, ASGIRequest):
        return await _chatkit_reply(request)
    # Under WSGI the request runs on an event loop of its own, which ends with it.
    try:
        return await _chatkit_reply(request)
    finally:
        await chatkit_loop_end()


async def _chatkit_reply(request: HttpRequest) -> HttpResponseBase:
    from chatkit_api.chatkit_server import chatkit_request_serve

    try:
        if request.method != "POST":
            raise MethodNotAllowed(f'Method "{request.method}" not allowed.')
        if not origin_allowed(request):
            # Every ChatKit request comes from the widget in a page; one from another site's
            # page would spend this site's tokens, and with the visitor's cookie act as them.
            raise Forbidden(origin_refusal(request, "the ChatKit endpoint"))
        try:
            body = request.body
        except RequestDataTooBig:
            raise RequestTooLarge() from None
        visitor_id = visitor_from_request(request) or visitor_new_id()
        reply = await chatkit_request_serve(
            visitor_id=visitor_id,
            client_ip=client_ip(request),
            locale=_request_locale(request),
            page_url=_request_page_url(request),
            api_url=request.build_absolute_uri(reverse("chatkit")),
            body=body,
            answer_seconds=_answer_seconds(request),
        )
    except ServiceError as exc:
        return service_error_response(exc)
    response: HttpResponseBase
    if reply.stream is None:
        response = HttpResponse(reply.body, content_type=reply.content_type)
    elif _streams(request):
        response = StreamingHttpResponse(reply.stream, content_type=reply.content_type)
        # Proxies such as nginx would otherwise hold the events back until the end.
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
    else:
        whole = b"".join([chunk async for chunk in reply.stream])
        response = HttpResponse(whole, content_type=reply.content_type)
    visitor_set_cookie(response, visitor_id)
    return response


@csrf_exempt
def attachment_upload(request: HttpRequest, attachment_id: str) -> HttpResponseBase:
    """`PUT /api/chatkit/attachments/<id>/upload?token=...`: the second phase of an upload to
    this service (without an S3 bucket), the file as the body; or a POST of it as multipart
    with a `file` field. The token in the URL, from `attachments.create`, is the permission.

    Its body may be as large as CHATKIT_ATTACHMENTS_MAX_BYTES (see chatkit_api.middleware);
    it is read only once the token is checked, and only up to the size its attachment declared.
    """
    from chatkit_api.attachments import attachment_upload_keep, attachment_upload_permit

    try:
        if request.method not in ("PUT", "POST"):
            raise MethodNotAllowed(f'Method "{request.method}" not allowed.')
        row = attachment_upload_permit(attachment_id=attachment_id, token=request.GET.get("token", ""))
        if request.method == "PUT":
            content_type, body = request.content_type or "", cast(IO[bytes], request)
        else:
            upload = request.FILES.get("file")
            if upload is None:
                raise AttachmentRefused("Send the file as the body, or as multipart with a `file` field.")
            content_type, body = upload.content_type or "", cast(IO[bytes], upload)
        attachment_upload_keep(row, content_type=content_type, body=body)
    except ServiceError as exc:
        return service_error_response(exc)
    return JsonResponse({"ok": True, "id": attachment_id})


def attachment_content(request: HttpRequest, attachment_id: str) -> HttpResponseBase:
    """`GET /api/chatkit/attachments/<id>/content?token=...`: a file kept by this service,
    for the short-lived signed link in an image's preview or the admin's link to it."""
    from chatkit_api.attachments import attachment_file_open

    try:
        if request.method not in ("GET", "HEAD"):
            raise MethodNotAllowed(f'Method "{request.method}" not allowed.')
        row, file = attachment_file_open(attachment_id=attachment_id, token=request.GET.get("token", ""))
    except ServiceError as exc:
        return service_error_response(exc)
    # Images are shown where they are linked (previews); anything else is downloaded, never
    # opened as a document of this origin.
    response = FileResponse(
        file,
        content_type=row.mime_type,
        filename=row.name,
        as_attachment=not row.mime_type.startswith("image/"),
    )
    # The link is the visitor's, and short-lived: a private cache may keep it that long.
    response["Cache-Control"] = f"private, max-age={settings.CHATKIT_ATTACHMENTS_URL_SECONDS}"
    response["Content-Security-Policy"] = "default-src 'none'; img-src 'self'; frame-ancestors 'none'"
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"error": "Not found."}, status=404)


def server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"error": "Internal server error."}, status=500)
