"""Pages for people: the API's schema and its docs."""

import functools
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, ensure_csrf_cookie
from django.views.decorators.http import require_GET


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
