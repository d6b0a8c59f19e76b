"""SES notifications from an SNS HTTPS subscription.

django-ses's webhook reads the body, checks the signature and the topic, and confirms the
subscription; deliveries, bounces and complaints are recorded by chatkit_api.delivery.
"""

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_ses.views import SESEventWebhookView

from chatkit_api import sns
from chatkit_api.delivery import ses_notification_record
from chatkit_api.exceptions import NotConfigured


class SesNotificationsWebhook(SESEventWebhookView):
    """`POST /api/chatkit/ses-notifications`."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS:
            error = NotConfigured(["SES_NOTIFICATION_TOPIC_ARNS"])
            return JsonResponse({"error": error.message, **error.extra}, status=error.status_code)
        try:
            message = json.loads(request.body)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            # django-ses would read it as an object and fail with a 500.
            return JsonResponse({"error": "The body is not an SNS message (a JSON object)."}, status=400)
        if not sns.sns_topic_trusted(message):
            # Checked before django-ses checks the signature, which may download a certificate.
            return JsonResponse({"error": "Untrusted topic."}, status=400)
        if not sns.sns_https_message_recent(message):
            return JsonResponse(
                {"error": "The SNS message is older than SNS retries a delivery: not accepted again."},
                status=400,
            )
        response = super().post(request, *args, **kwargs)
        if response.status_code == 400:
            # django-ses states the reason as plain text; this API answers JSON.
            return JsonResponse({"error": response.content.decode()}, status=400)
        return response

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return JsonResponse({"error": "Method not allowed."}, status=405, headers={"Allow": "POST"})

    def verify_event_message(self, notification: Any) -> bool:
        return sns.sns_signature_valid(notification)

    def verify_event_topic(self, notification: Any) -> bool:
        return sns.sns_topic_trusted(notification)

    def handle_delivery(self, notification: dict[str, Any], message: dict[str, Any]) -> None:
        ses_notification_record(notification=message, sns_message_id=str(notification.get("MessageId", "")))

    handle_bounce = handle_delivery
    handle_complaint = handle_delivery
