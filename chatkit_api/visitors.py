"""The per-visitor ChatKit user id, issued by this service and kept in a signed cookie.

ChatKit scopes threads and history by `user`, so the id must differ per browser and must
never come from the request body: a visitor who could choose it could read other threads.
"""

import secrets
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.urls import get_script_prefix

VISITOR_ID_PREFIX = "visitor_"
_SIGNING_SALT = "chatkit_api.visitor"


def _max_age() -> timedelta:
    return timedelta(days=settings.VISITOR_COOKIE_MAX_AGE_DAYS)


def visitor_new_id() -> str:
    return VISITOR_ID_PREFIX + secrets.token_urlsafe(18)


def visitor_from_request(request: HttpRequest) -> str | None:
    """The visitor id from a valid, unexpired cookie; None for a missing or forged one."""
    visitor_id = request.get_signed_cookie(
        settings.VISITOR_COOKIE_NAME,
        default=None,
        salt=_SIGNING_SALT,
        max_age=_max_age(),
    )
    if visitor_id and visitor_id.startswith(VISITOR_ID_PREFIX):
        return visitor_id
    return None


def client_ip(request: HttpRequest) -> str:
    """The address the platform saw: REMOTE_ADDR, which the Lambda handler sets from the
    request context. Never X-Forwarded-For, which the client writes itself."""
    return request.META.get("REMOTE_ADDR") or ""


def visitor_set_cookie(response: HttpResponseBase, visitor_id: str) -> None:
    """(Re)issue the cookie; every session call renews its lifetime."""
    response.set_signed_cookie(
        settings.VISITOR_COOKIE_NAME,
        visitor_id,
        salt=_SIGNING_SALT,
        max_age=int(_max_age().total_seconds()),
        path=get_script_prefix() + "api/chatkit",
        domain=settings.VISITOR_COOKIE_DOMAIN,
        secure=settings.VISITOR_COOKIE_SECURE,
        httponly=True,
        samesite=settings.VISITOR_COOKIE_SAMESITE,
    )
