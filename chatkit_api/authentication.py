"""The two ways to call the transcript endpoint: a server's bearer token or a visitor's cookie."""

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


class VisitorCookieAuthentication(authentication.BaseAuthentication):
    """The visitor cookie issued by the session endpoint: that visitor's own threads only."""

    def authenticate(self, request: HttpRequest) -> tuple[Caller, None] | None:
        visitor_id = visitor_from_request(request)
        return (Caller(visitor_id=visitor_id, client_ip=client_ip(request)), None) if visitor_id else None
