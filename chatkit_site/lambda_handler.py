"""AWS Lambda entry point: HTTP events go to Django through apig-wsgi."""

import importlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from apig_wsgi import make_lambda_handler
from django.conf import settings

# Importing the WSGI module sets Django up: once per container, outside the request path.
from chatkit_site.wsgi import application

if settings.CHATKIT_MODE == "self_hosted":
    # The ChatKit and Agents SDKs take about a second to import; load them while Lambda sets
    # the container up rather than in the first visitor's request.
    importlib.import_module("chatkit_api.chatkit_server")

logger = logging.getLogger(__name__)


def platform_client_ip(environ: dict[str, Any]) -> str | None:
    """The client address API Gateway, the Function URL or the load balancer saw.

    apig-wsgi takes REST API and ALB addresses from the first X-Forwarded-For entry, which
    the client writes itself; rate limits and logs must not trust it.
    """
    context = environ.get("apig_wsgi.request_context") or {}
    source_ip = (context.get("identity") or {}).get("sourceIp") or (context.get("http") or {}).get("sourceIp")
    if source_ip:
        # Some REST API events carry a CIDR such as "192.168.0.1/32".
        return str(source_ip).split("/")[0]
    if "elb" in context:
        # An ALB appends the address it saw to whatever X-Forwarded-For the client sent.
        forwarded = environ.get("HTTP_X_FORWARDED_FOR", "")
        entries = [entry.strip() for entry in forwarded.split(",") if entry.strip()]
        return entries[-1] if entries else None
    return None


def with_platform_client_ip(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        client_ip = platform_client_ip(environ)
        if client_ip:
            environ["REMOTE_ADDR"] = client_ip
        return app(environ, start_response)

    return wrapped


_http_handler = make_lambda_handler(with_platform_client_ip(application), binary_support=True)


def _is_http_event(event: Any) -> bool:
    if not isinstance(event, dict):
        return False
    return "httpMethod" in event or "routeKey" in event or "http" in event.get("requestContext", {})


def handler(event: Any, context: Any) -> Any:
    if _is_http_event(event):
        response = _http_handler(event, context)
        if "cookies" in response:
            # Django writes each Set-Cookie value with a leading space (after "Set-Cookie:").
            response["cookies"] = [cookie.strip() for cookie in response["cookies"]]
        return response
    logger.error(
        "Unsupported Lambda event with keys %s",
        sorted(event) if isinstance(event, dict) else type(event).__name__,
    )
    return {
        "ok": False,
        "error": "Unsupported event: expected an API Gateway, Function URL or ALB HTTP event.",
    }
