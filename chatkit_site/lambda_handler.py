"""AWS Lambda entry point: HTTP events go to Django through apig-wsgi."""

import logging
import os
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatkit_site.settings")

from apig_wsgi import make_lambda_handler
from django.core.wsgi import get_wsgi_application

logger = logging.getLogger(__name__)

# Set up once per container, outside the per-request path.
application = get_wsgi_application()
_http_handler = make_lambda_handler(application, binary_support=True)


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
