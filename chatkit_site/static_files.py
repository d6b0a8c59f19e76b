from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings
from django.http import HttpRequest, HttpResponse

if TYPE_CHECKING:
    from whitenoise.middleware import WhiteNoiseMiddleware


class LazyWhiteNoiseMiddleware:
    """WhiteNoise, set up on the first request for a static file instead of at start-up.

    WhiteNoise reads every collected file's metadata when it starts, which would add tens
    of milliseconds to every Lambda cold start, and importing it a few more; only the pages
    (the admin, the try-it page, the API docs) use static files.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.static_prefix = "/" + settings.STATIC_URL.lstrip("/")
        self.whitenoise: WhiteNoiseMiddleware | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(self.static_prefix):
            return self.get_response(request)
        if self.whitenoise is None:
            from whitenoise.middleware import WhiteNoiseMiddleware

            self.whitenoise = WhiteNoiseMiddleware(self.get_response)
        return self.whitenoise(request)
