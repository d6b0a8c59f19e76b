"""Protections every request gets before it reaches a view."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

# The API itself; the docs page under /api/docs/ is HTML that runs its own scripts.
API_PATH_PREFIX = "/api/chatkit"


class RequestBodyLimitMiddleware:
    """Refuse a body over REQUEST_BODY_MAX_BYTES with 413, without reading it.

    DRF reads the body straight from the WSGI stream, past Django's own upload limit, so
    the size is checked here. Under WSGI nothing beyond Content-Length is ever read.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"error": "Invalid Content-Length header."}, status=400)
        limit = settings.REQUEST_BODY_MAX_BYTES
        if length > limit:
            return JsonResponse(
                {"error": f"The request body is too large: at most {limit} bytes."}, status=413
            )
        return self.get_response(request)


class ApiResponseHeadersMiddleware:
    """API replies are JSON that may hold a client secret: never stored, never rendered."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.path_info.startswith(API_PATH_PREFIX):
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault(
                "Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"
            )
        return response
