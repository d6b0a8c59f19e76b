"""Protections every request gets before it reaches a view.

Each works under WSGI and ASGI alike, so that under an ASGI server the ChatKit endpoint's
async view runs on the server's event loop instead of being handed to a thread.
"""

import asyncio
import io
import ipaddress
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.wsgi import WSGIRequest
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.utils.crypto import constant_time_compare

from chatkit_api.attachment_storage import uploads_received
from chatkit_api.exceptions import DatabaseUnavailable
from chatkit_api.time_budget import time_budget
from chatkit_site import aws_secrets

logger = logging.getLogger(__name__)

# The API itself; the docs page under /api/docs/ is HTML that runs its own scripts.
API_PATH_PREFIX = "/api/chatkit"

GetResponse = Callable[[HttpRequest], Any]

# The one path whose body is a file (see chatkit_api.apis.attachment_upload): its own limit.
_ATTACHMENT_UPLOAD_PATH = re.compile(r"^/api/chatkit/attachments/[A-Za-z0-9_-]{1,128}/upload/?$")
# What a multipart upload adds around the file: boundaries and the part's headers.
MULTIPART_OVERHEAD_BYTES = 16 * 1024


def request_body_limit(path: str) -> int:
    """The most bytes a request body to `path` (below the script prefix) may have: an
    attachment's upload may be as large as an attachment where files are uploaded to this
    service; every other body, REQUEST_BODY_MAX_BYTES."""
    if _ATTACHMENT_UPLOAD_PATH.match(path) and uploads_received():
        return settings.CHATKIT_ATTACHMENTS_MAX_BYTES + MULTIPART_OVERHEAD_BYTES
    return settings.REQUEST_BODY_MAX_BYTES


class SyncAndAsyncMiddleware:
    """A middleware that answers `refuse(request)` when it says so, else the view's response
    passed through `adjust`; in whichever mode the handler runs."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def refuse(self, request: HttpRequest) -> HttpResponseBase | None:
        return None

    def adjust(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        return response

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        refused = self.refuse(request)
        return refused if refused is not None else self.adjust(request, self.get_response(request))

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        refused = self.refuse(request)
        return refused if refused is not None else self.adjust(request, await self.get_response(request))


class TimeBudgetMiddleware(SyncAndAsyncMiddleware):
    """Start the request's time budget (REQUEST_TIME_BUDGET_SECONDS, see chatkit_api.time_budget)
    as it comes in: every outside call the request makes ends within it.

    A self-hosted answer's model calls do not read it: the answer has its own deadline
    (CHATKIT_AGENT_TIMEOUT_SECONDS), and streams.
    """

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        with time_budget(settings.REQUEST_TIME_BUDGET_SECONDS):
            return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        with time_budget(settings.REQUEST_TIME_BUDGET_SECONDS):
            return await self.get_response(request)


class SecretsRefreshMiddleware(SyncAndAsyncMiddleware):
    """Read again the secrets the settings came from once they are SECRETS_CACHE_SECONDS old
    (chatkit_site.aws_secrets), before the request uses them: a rotated secret is in use
    within that time, without a deploy. Under ASGI the read runs in a thread, off the loop
    that serves every other answer."""

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        if aws_secrets.settings_stale(settings.SECRETS_CACHE_SECONDS):
            aws_secrets.settings_refresh(settings.SECRETS_CACHE_SECONDS)
        return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if aws_secrets.settings_stale(settings.SECRETS_CACHE_SECONDS):
            await asyncio.to_thread(aws_secrets.settings_refresh, settings.SECRETS_CACHE_SECONDS)
        return await self.get_response(request)


def _viewer_address(value: str) -> str | None:
    """The address of CloudFront-Viewer-Address ("198.51.100.10:46532", or an IPv6 address
    followed by ":port", without brackets); None when it is not one."""
    address, _, port = value.strip().rpartition(":")
    if not port.isdigit():
        return None
    try:
        return str(ipaddress.ip_address(address.strip("[]")))
    except ValueError:
        return None


class CloudFrontViewerMiddleware(SyncAndAsyncMiddleware):
    """Behind CloudFront the platform's client address is the edge's: every visitor behind
    one edge would share one rate-limit bucket. A request that carries the distribution's
    secret (X-Origin-Secret, CLOUDFRONT_ORIGIN_SECRET) came through it, and its
    CloudFront-Viewer-Address is the visitor's; anyone else could write that header, so
    without the secret it is ignored.
    """

    def refuse(self, request: HttpRequest) -> HttpResponseBase | None:
        # Taken out of the request, so that nothing further on (a log, an error report) shows it.
        presented = request.META.pop("HTTP_X_ORIGIN_SECRET", "")
        expected = settings.CLOUDFRONT_ORIGIN_SECRET
        if not expected or not presented or not constant_time_compare(presented, expected):
            return None
        viewer = _viewer_address(request.META.get("HTTP_CLOUDFRONT_VIEWER_ADDRESS", ""))
        if viewer is None:
            logger.warning("A request through CloudFront has no valid CloudFront-Viewer-Address")
            return None
        request.META["REMOTE_ADDR"] = viewer
        return None


class AllowedHostMiddleware(SyncAndAsyncMiddleware):
    """Refuse a Host outside DJANGO_ALLOWED_HOSTS with the JSON 400 of every other refusal.

    Left to Django, the first middleware to ask for the host gets an HTML 400 and an ERROR
    with a traceback in the log, for what is a scanner or a misrouted request.
    """

    def refuse(self, request: HttpRequest) -> HttpResponseBase | None:
        try:
            request.get_host()
        except DisallowedHost:
            host = request.META.get("HTTP_HOST", "")[:200]
            logger.warning("Refused a request for host %r: it is not in DJANGO_ALLOWED_HOSTS", host)
            return JsonResponse({"error": "This service does not answer for that host."}, status=400)
        return None


class DatabaseUnavailableMiddleware(SyncAndAsyncMiddleware):
    """A database that refuses the connection, fails or does not answer in time is a JSON 503
    on every path, not a 500: nothing is wrong with the request, and it can be tried again.

    Where a view can say more it catches the error itself (the rate limits' 503 says that
    requests cannot be counted).
    """

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponseBase | None:
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        # The database's own words (refused, timed out, locked) are for the operator only.
        logger.error("%s %s: the database failed", request.method, request.path, exc_info=exception)
        error = DatabaseUnavailable()
        return JsonResponse({"error": error.message}, status=error.status_code)


class RequestBodyLimitMiddleware(SyncAndAsyncMiddleware):
    """Refuse a body over REQUEST_BODY_MAX_BYTES (an attachment's upload: over
    CHATKIT_ATTACHMENTS_MAX_BYTES) with 413, without reading it.

    DRF reads the body straight from the WSGI stream, past Django's own upload limit, so
    the size is checked here. Under WSGI nothing beyond Content-Length is ever read.
    """

    def refuse(self, request: HttpRequest) -> HttpResponseBase | None:
        limit = request_body_limit(request.path_info)
        too_large = JsonResponse(
            {"error": f"The request body is too large: at most {limit} bytes."}, status=413
        )
        if (
            isinstance(request, WSGIRequest)
            and request.environ.get("wsgi.input_terminated")
            and "CONTENT_LENGTH" not in request.META
        ):
            return None if _chunked_body_read(request, limit) else too_large
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"error": "Invalid Content-Length header."}, status=400)
        if length > limit:
            return too_large
        return None


def _chunked_body_read(request: WSGIRequest, limit: int) -> bool:
    """Read a WSGI body sent in chunks, up to `limit`; False when it is longer.

    Django reads a body without Content-Length as empty. A server that decodes chunks (gunicorn)
    says so with `wsgi.input_terminated`, and its stream ends where the body does; what was read
    becomes the request's body, with its length.
    """
    body = request.environ["wsgi.input"].read(limit + 1)
    if len(body) > limit:
        return False
    request._stream = io.BytesIO(body)
    request.META["CONTENT_LENGTH"] = str(len(body))
    return True


_BODY_END = {"type": "http.request", "body": b"", "more_body": False}


class AsgiRequestBodyLimit:
    """Under ASGI, read no more of a request body than REQUEST_BODY_MAX_BYTES (an
    attachment's upload: see `request_body_limit`).

    Django's ASGI handler reads the whole body (to disk past FILE_UPLOAD_MAX_MEMORY_SIZE) before
    any middleware runs, whether it declares its length or comes in chunks without one. Wrapped
    in this, a body declared larger than the limit is not read at all, and one that grows past
    it stops being read there and is given the length read so far; RequestBodyLimitMiddleware
    then answers 413 as under WSGI, with the CORS headers of every other reply.
    """

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict]], send: Any
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, root_path = scope.get("path", ""), scope.get("root_path", "")
        limit = request_body_limit(path.removeprefix(root_path) if root_path else path)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        declared_too_large = declared.isdigit() and int(declared) > limit
        read = 0
        body_ended = False

        async def receive_within_limit() -> dict:
            nonlocal read, body_ended
            if declared_too_large and not body_ended:
                body_ended = True
                return _BODY_END
            message = await receive()
            while message["type"] == "http.request" and body_ended:
                # The rest of a refused body, arriving while the 413 is sent: dropped.
                message = await receive()
            if message["type"] != "http.request":
                return message
            read += len(message.get("body", b""))
            if read > limit:
                body_ended = True
                scope["headers"] = [
                    *(header for header in scope["headers"] if header[0] != b"content-length"),
                    (b"content-length", str(read).encode()),
                ]
                return _BODY_END
            body_ended = not message.get("more_body", False)
            return message

        await self.app(scope, receive_within_limit, send)


class ApiResponseHeadersMiddleware(SyncAndAsyncMiddleware):
    """API replies are JSON that may hold a client secret: never stored, never rendered."""

    def adjust(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if request.path_info.startswith(API_PATH_PREFIX):
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault(
                "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"
            )
        return response
