from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

if TYPE_CHECKING:
    from whitenoise.middleware import WhiteNoiseMiddleware


class LazyWhiteNoiseMiddleware:
    """WhiteNoise, set up on the first request for a static file instead of at start-up.

    WhiteNoise reads every collected file's metadata when it starts, which would add tens
    of milliseconds to every Lambda cold start, and importing it a few more; only the pages
    (the admin, the try-it page, the API docs) use static files. Works under WSGI and ASGI
    (WhiteNoise itself is synchronous: under ASGI a file is looked up in Django's sync thread).
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.static_prefix = "/" + settings.STATIC_URL.lstrip("/")
        self.whitenoise: WhiteNoiseMiddleware | None = None
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        response = self._static_file(request) if request.path_info.startswith(self.static_prefix) else None
        return response if response is not None else self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        if request.path_info.startswith(self.static_prefix):
            response = await sync_to_async(self._static_file_read)(request)
            if response is not None:
                return response
        return await self.get_response(request)

    def _whitenoise(self) -> "WhiteNoiseMiddleware":
        if self.whitenoise is None:
            from whitenoise.middleware import WhiteNoiseMiddleware

            self.whitenoise = WhiteNoiseMiddleware(self.get_response)
        return self.whitenoise

    def _found(self, request: HttpRequest) -> Any:
        whitenoise = self._whitenoise()
        path = request.path_info
        return whitenoise.find_file(path) if whitenoise.autorefresh else whitenoise.files.get(path)

    def _static_file(self, request: HttpRequest) -> HttpResponseBase | None:
        static_file = self._found(request)
        return self._whitenoise().serve(static_file, request) if static_file is not None else None

    def _static_file_read(self, request: HttpRequest) -> HttpResponseBase | None:
        """The file read whole: an ASGI server would otherwise stream WhiteNoise's file response
        through a thread, chunk by chunk (Django warns about that). The pages' files are small."""
        static_file = self._found(request)
        if static_file is None:
            return None
        found = static_file.get_response(request.method, request.META)
        try:
            response = HttpResponse(found.file.read() if found.file else b"", status=int(found.status))
        finally:
            if found.file:
                found.file.close()
        del response["Content-Type"]
        for name, value in found.headers:
            response[name] = value
        return response
