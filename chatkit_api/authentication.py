"""The two ways to call the transcript endpoint: a server's bearer token or a visitor's cookie."""

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare
from rest_framework import authentication, exceptions

from chatkit_api.services import Caller
from chatkit_api.visitors import client_ip, visitor_from_request


class TranscriptTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <TRANSCRIPT_API_TOKEN>`: a trusted server, any thread."""

    def authenticate(self, request: HttpRequest) -> tuple[Caller, None] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        expected = settings.TRANSCRIPT_API_TOKEN
        if scheme.lower() != "bearer" or not expected or not constant_time_compare(token.strip(), expected):
            raise exceptions.AuthenticationFailed("Invalid transcript API token.")
        return Caller(client_ip=client_ip(request)), None

    def authenticate_header(self, request: HttpRequest) -> str:
        return 'Bearer realm="transcript"'


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url.strip().lower())
    return parts.scheme, parts.netloc


def origin_refusal(request: HttpRequest, what: str, *, otherwise: str = "") -> str:
    """Why a browser call without an allowed Origin is refused, in words that say which case
    it is; `otherwise` says how a caller without one gets in."""
    if not request.headers.get("Origin"):
        return (
            f"Refused: {what} needs the Origin header, which browsers send with every POST; this "
            f"request has none.{otherwise}"
        )
    return (
        f"Refused: {what} answers pages on the API's own origin (PUBLIC_ORIGINS when it is "
        "served through a proxy) or an origin listed in CORS_ALLOWED_ORIGINS, not this "
        "request's Origin."
    )


def _own_origins(request: HttpRequest) -> set[tuple[str, str]]:
    """Where browsers reach the API: PUBLIC_ORIGINS when a proxy (CloudFront) serves it under
    the site's domain, since the Host it then sees is the proxy's origin, not what the browser
    called; else the request's own scheme and host."""
    if settings.PUBLIC_ORIGINS:
        return {_origin(public) for public in settings.PUBLIC_ORIGINS}
    return {(request.scheme or "", request.get_host().lower())}


def origin_allowed(request: HttpRequest) -> bool:
    """The calling page is on the API's own origin or on one in CORS_ALLOWED_ORIGINS.

    Browsers send Origin with every POST, same-origin or not, and a page cannot change it.
    """
    origin = request.headers.get("Origin", "")
    if not origin or origin == "null":
        return False
    try:
        caller = _origin(origin)
    except ValueError:
        return False
    allowed = _own_origins(request) | {_origin(allowed) for allowed in settings.CORS_ALLOWED_ORIGINS}
    return caller in allowed


class VisitorCookieAuthentication(authentication.BaseAuthentication):
    """The visitor cookie issued by the session endpoint: that visitor's own threads only.

    A browser sends the cookie on whatever page made the request, so a page on another site
    could make a visitor's browser send mail. The request's Origin must therefore be one
    the site trusts; this does for cookie calls what a CSRF token would, with nothing for
    the widget's code to add.
    """

    def authenticate(self, request: HttpRequest) -> tuple[Caller, None] | None:
        visitor_id = visitor_from_request(request)
        if not visitor_id:
            return None
        if not origin_allowed(request):
            raise exceptions.PermissionDenied(
                origin_refusal(
                    request,
                    "a visitor's transcript call",
                    otherwise=" A server calls with the bearer token instead.",
                )
            )
        return Caller(visitor_id=visitor_id, client_ip=client_ip(request)), None
