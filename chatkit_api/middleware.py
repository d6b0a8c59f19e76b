"""Protections every request gets before it reaches a view.

Each works under WSGI and ASGI alike, so that under an ASGI server the ChatKit endpoint's
async view runs on the server's event loop instead of being handed to a thread.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse

# The API itself; the docs page under /api/docs/ is HTML that runs its own scripts.
API_PATH_PREFIX = "/api/chatkit"

GetResponse = Callable[[HttpRequest], Any]


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


class RequestBodyLimitMiddleware(SyncAndAsyncMiddleware):
    """Refuse a body over REQUEST_BODY_MAX_BYTES with 413, without reading it.

    DRF reads the body straight from the WSGI stream, past Django's own upload limit, so
    the size is checked here. Under WSGI nothing beyond Content-Length is ever read.
    """

    def refuse(self, request: HttpRequest) -> HttpResponseBase | None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"error": "Invalid Content-Length header."}, status=400)
        limit = settings.REQUEST_BODY_MAX_BYTES
        if length > limit:
            return JsonResponse(
                {"error": f"The request body is too large: at most {limit} bytes."}, status=413
            )
        return None


class ApiResponseHeadersMiddleware(SyncAndAsyncMiddleware):
    """API replies are JSON that may hold a client secret: never stored, never rendered."""

    def adjust(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if request.path_info.startswith(API_PATH_PREFIX):
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault(
                "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"
            )
        return response
