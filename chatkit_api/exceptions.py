"""The project's own errors and the one handler that turns every API error into JSON."""

import logging
from typing import Any

from django.http import JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ServiceError(Exception):
    """An expected failure with a message that is safe to show to the caller."""

    status_code = 500
    message = "Internal error."

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        self.message = message or self.message
        self.extra = extra
        super().__init__(self.message)

    @property
    def headers(self) -> dict[str, str]:
        return {}


class NotConfigured(ServiceError):
    status_code = 503

    def __init__(self, missing: list[str]) -> None:
        names = ", ".join(missing)
        verb = "is" if len(missing) == 1 else "are"
        super().__init__(f"The service is not configured: {names} {verb} not set.", missing=missing)


class NotServedInThisMode(ServiceError):
    """An endpoint of the other CHATKIT_MODE: it does not exist in this deployment."""

    status_code = 404


class Forbidden(ServiceError):
    status_code = 403


class MethodNotAllowed(ServiceError):
    status_code = 405


class RequestTooLarge(ServiceError):
    status_code = 413
    message = "The request body is too large."


class ThreadNotFound(ServiceError):
    status_code = 404
    message = "Thread not found."


class InvalidChatKitRequest(ServiceError):
    """A ChatKit protocol request this server cannot read or will not serve."""

    status_code = 400


class ThreadBusy(ServiceError):
    """An answer is still being written on the thread; its next message waits for it."""

    status_code = 409


class ChatKitItemNotFound(ServiceError):
    """No such thread, item or attachment for this visitor (another visitor's included)."""

    status_code = 404


class AttachmentRefused(ServiceError):
    """A file the limits refuse (type, count, not uploaded, not what was declared), or an
    upload that does not match what was declared."""

    status_code = 400


class AttachmentTooLarge(AttachmentRefused):
    status_code = 413


class AttachmentAlreadyUploaded(ServiceError):
    status_code = 409
    message = "This file was already uploaded."


class AttachmentLinkExpired(ServiceError):
    status_code = 403
    message = "This link has expired."


class AttachmentsUnavailable(ServiceError):
    """Nowhere to keep files: on Lambda without CHATKIT_ATTACHMENTS_BUCKET."""

    status_code = 503
    message = (
        "File uploads are not available: on AWS Lambda they need an S3 bucket "
        "(CHATKIT_ATTACHMENTS_BUCKET), since the function's file system is read-only."
    )


class AttachmentStorageFailed(ServiceError):
    """The attachments storage (S3) failed or did not answer in time."""

    status_code = 502
    message = "The file storage did not answer. Try again shortly."


class UpstreamError(ServiceError):
    """OpenAI could not be reached or answered with an error."""

    status_code = 502

    def __init__(self, message: str, *, upstream_status: int | None = None) -> None:
        super().__init__(message)
        # What OpenAI answered, for callers that act on it (never shown to an API caller).
        self.upstream_status = upstream_status


class ManagedChatKitGone(ServiceError):
    """Managed ChatKit no longer answers: Agent Builder, which ran its workflows, has shut down."""

    status_code = 503
    message = (
        "Managed ChatKit is no longer available: OpenAI shut down Agent Builder, which ran this "
        "service's workflow, on 2026-11-30. Switch the service to self-hosted mode "
        "(CHATKIT_MODE=self_hosted) and the widget to /api/chatkit."
    )


class EmailSendFailed(ServiceError):
    """SES refused or could not be reached; the transcript is recorded and can be resent."""

    status_code = 502


class TranscriptSendSkipped(ServiceError):
    """The transcript was not sent by this call, and need not be: see the subclasses."""

    status_code = 409


class TranscriptBeingSent(TranscriptSendSkipped):
    """Another request or resend holds the transcript's send (see services._transcript_claim_send)."""

    message = "This transcript is already being sent. Try again shortly."


class TranscriptAlreadySent(TranscriptSendSkipped):
    """Only a transcript that never reached staff was to be sent, and this one reached them meanwhile."""

    message = "This transcript reached staff meanwhile, so it was not sent again."


class RateLimited(ServiceError):
    """A limit is used up; the reply says when the next request can go through."""

    status_code = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.extra["retry_after"])}


class RateLimitUnavailable(ServiceError):
    status_code = 503
    message = "Requests cannot be counted right now, so none are accepted. Try again later."


class DatabaseUnavailable(ServiceError):
    """The database refused the connection, failed, or did not answer in time."""

    status_code = 503
    message = "The database is unavailable right now. Try again later."


class IdempotencyKeyInUse(ServiceError):
    status_code = 409
    message = "A request with this Idempotency-Key is still being processed. Try again shortly."


class IdempotencyKeyReused(ServiceError):
    status_code = 422
    message = "This Idempotency-Key was already used with a different request."


def service_error_response(exc: ServiceError) -> JsonResponse:
    """A ServiceError as the JSON reply of a plain Django view, like the API's handler makes it."""
    if exc.status_code >= 500:
        logger.warning("%s: %s", type(exc).__name__, exc.message)
    return JsonResponse({"error": exc.message, **exc.extra}, status=exc.status_code, headers=exc.headers)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> Response:
    return Response({"error": message, **extra}, status=status, headers=headers)


def _field_errors(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Flatten DRF's nested error detail into {"field": ["message", ...]}."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            field = "body" if key == "non_field_errors" else key
            name = field if not prefix else f"{prefix}.{field}"
            flat.update(_field_errors(value, name))
        return flat
    if isinstance(detail, list) and detail and not isinstance(detail[0], (dict, list)):
        return {prefix or "body": [str(message) for message in detail]}
    if isinstance(detail, list):
        flat = {}
        for index, value in enumerate(detail):
            flat.update(_field_errors(value, f"{prefix}[{index}]"))
        return flat
    return {prefix or "body": [str(detail)]}


def validation_summary(detail: Any) -> tuple[str, dict[str, list[str]]]:
    """A one-line message naming each invalid field, and the problems per field."""
    fields = _field_errors(detail)
    summary = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in fields.items())
    return f"Invalid request. {summary}", fields


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        if exc.status_code >= 500:
            logger.warning("%s: %s", type(exc).__name__, exc.message)
        return error_response(exc.status_code, exc.message, exc.headers, **exc.extra)

    if isinstance(exc, drf_exceptions.ValidationError):
        message, fields = validation_summary(exc.detail)
        return error_response(400, message, fields=fields)

    response = drf_exception_handler(exc, context)
    if response is not None:
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        response.data = {"error": str(detail) or "Request failed."}
    return response
