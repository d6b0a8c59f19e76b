"""Pages for people: the try-it page at `/`, and the API's schema and docs."""

import functools
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from django.views.decorators.http import require_GET

from chatkit_api.attachment_storage import attachments_accepted
from chatkit_api.services import (
    CHATKIT_SETTINGS,
    SESSION_SETTINGS,
    self_hosted,
    settings_missing,
    transcript_settings,
)

# What the try-it page's widget sends as its domain key when CHATKIT_DOMAIN_KEY is unset:
# ChatKit needs one, and on localhost any value is accepted.
LOCAL_DOMAIN_KEY = "domain_pk_localhost_dev"


def composer_attachments(*, is_self_hosted: bool) -> dict[str, Any]:
    """ChatKit's `composer.attachments` option: files offered only where the self-hosted server
    takes them (see attachment_storage.attachments_accepted), within its limits, so that the
    widget refuses what the server would; a composer that offers files the server refuses
    would fail every upload. Managed sessions upload as the workflow says."""
    if not (is_self_hosted and attachments_accepted()):
        return {"enabled": False}
    return {
        "enabled": True,
        "maxSize": settings.CHATKIT_ATTACHMENTS_MAX_BYTES,
        "maxCount": settings.CHATKIT_ATTACHMENTS_MAX_PER_MESSAGE,
        # By type alone: the file picker then takes any extension of an accepted type.
        "accept": {mime_type: [] for mime_type in settings.CHATKIT_ATTACHMENTS_MIME_TYPES},
    }


def embed_snippet(*, api_url: str, self_hosted: bool) -> str:
    """What a site pastes into its pages to embed ChatKit against this service: in managed
    mode `api_url` is the session endpoint, self-hosted it is the ChatKit endpoint."""
    attachments = composer_attachments(is_self_hosted=self_hosted)
    return render_to_string(
        "chatkit_api/embed_snippet.html",
        {
            "api_url": api_url,
            "self_hosted": self_hosted,
            "attachments": attachments,
            "accept": json.dumps(attachments.get("accept")),
            "domain_key": settings.CHATKIT_DOMAIN_KEY or "domain_pk_...",
            "chatkit_script_url": settings.CHATKIT_SCRIPT_URL,
        },
    ).strip()


def try_it(request: HttpRequest) -> HttpResponse:
    """`GET /`: ChatKit embedded against this service, a recap form, and what is missing."""
    if not settings.TRY_IT_PAGE_ENABLED:
        # Switched off, the page is not there at all: the API's JSON 404, whatever the method.
        raise Http404
    return _try_it_page(request)


# The page calls the API as the widget on a site would. Whether the transcript call is
# accepted from a browser can depend on CSRF, so the page makes sure the browser holds
# Django's CSRF cookie, and its script sends the token along.
@require_GET
@ensure_csrf_cookie
def _try_it_page(request: HttpRequest) -> HttpResponse:
    is_self_hosted = self_hosted()
    attachments = composer_attachments(is_self_hosted=is_self_hosted)
    api_url = reverse("chatkit" if is_self_hosted else "chatkit-session")
    return render(
        request,
        "chatkit_api/try_it.html",
        {
            "chatkit_script_url": settings.CHATKIT_SCRIPT_URL,
            "self_hosted": is_self_hosted,
            "chat_missing": settings_missing(names=CHATKIT_SETTINGS if is_self_hosted else SESSION_SETTINGS),
            "agent": settings.CHATKIT_AGENT,
            "attachments": attachments,
            "transcript_settings": transcript_settings(),
            "transcript_missing": settings_missing(names=transcript_settings()),
            "mail_to_console": not settings.SES_FROM_EMAIL,
            "visitor_copy": settings.ALLOW_USER_RECAP,
            "snippet": embed_snippet(api_url=request.build_absolute_uri(api_url), self_hosted=is_self_hosted),
            "page_config": {
                "chatkitScriptUrl": settings.CHATKIT_SCRIPT_URL,
                "selfHosted": is_self_hosted,
                "apiUrl": api_url,
                "domainKey": settings.CHATKIT_DOMAIN_KEY or LOCAL_DOMAIN_KEY,
                "transcriptUrl": reverse("chatkit-transcript"),
                "csrfCookieName": settings.CSRF_COOKIE_NAME,
                "visitorCopy": settings.ALLOW_USER_RECAP,
                "attachments": attachments,
            },
        },
    )


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """`GET /favicon.ico`, which browsers ask every site for (the admin's pages link no icon)."""
    # Resolved here, not in the URL conf: the static files storage loads WhiteNoise, which
    # the API's calls never need.
    return redirect(static("chatkit_api/favicon.svg"))


# Swagger UI's "Try it out" sends Django's CSRF token along, as the API's browser callers do.
@require_GET
@ensure_csrf_cookie
def api_docs(request: HttpRequest) -> HttpResponse:
    """`GET /api/docs/`: Swagger UI over the schema, its files served from here."""
    return render(
        request,
        "chatkit_api/api_docs.html",
        {"schema_url": reverse("api-schema"), "csrf_cookie_name": settings.CSRF_COOKIE_NAME},
    )


@functools.cache
def _schema_view() -> Callable[..., HttpResponse]:
    # Imported on the first schema request, not with the URL conf: drf-spectacular is
    # for this view only, and every cold start of the API would otherwise load it.
    from drf_spectacular.views import SpectacularAPIView

    import chatkit_api.schema  # noqa: F401 - registers the extensions that describe the API

    return SpectacularAPIView.as_view()


# The schema view answers every method itself (a JSON 405 but for GET); without this,
# Django's CSRF check would answer a POST first, with an HTML 403.
@csrf_exempt
def api_schema(request: HttpRequest) -> HttpResponse:
    """`GET /api/schema/`: the OpenAPI 3 schema, YAML by default, JSON with `?format=json`."""
    return _schema_view()(request)
