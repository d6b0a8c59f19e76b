"""Builders for the events Lambda receives, shaped like the samples AWS publishes
(aws-lambda-go `events/testdata/`, Powertools for AWS Lambda `tests/events/`)."""

import base64
import json
import time
from typing import Any


def _body(body: Any, *, base64_encoded: bool) -> tuple[str | None, bool]:
    if body is None:
        return None, False
    raw = body if isinstance(body, (str, bytes)) else json.dumps(body)
    raw_bytes = raw.encode() if isinstance(raw, str) else raw
    if base64_encoded:
        return base64.b64encode(raw_bytes).decode(), True
    return raw_bytes.decode(), False


def body_of(response: dict[str, Any]) -> bytes:
    """The body of an HTTP reply the handler returned, whether base64-encoded or not."""
    raw = response["body"]
    return base64.b64decode(raw) if response["isBase64Encoded"] else raw.encode()


def http_api_v2_event(
    *,
    method: str = "POST",
    path: str = "/api/chatkit/session",
    body: Any = None,
    headers: dict[str, str] | None = None,
    cookies: list[str] | None = None,
    source_ip: str = "203.0.113.7",
    base64_encoded: bool = False,
    stage: str = "$default",
) -> dict[str, Any]:
    """An HTTP API (payload 2.0) or Function URL event."""
    encoded_body, is_base64 = _body(body, base64_encoded=base64_encoded)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "accept": "*/*",
            "content-type": "application/json",
            "host": "abcdefghij.execute-api.eu-west-1.amazonaws.com",
            "user-agent": "Mozilla/5.0",
            "x-amzn-trace-id": "Root=1-5e9f0c65-1de4d666d4dd26aced652b6c",
            "x-forwarded-for": source_ip,
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
            **(headers or {}),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdefghij",
            "domainName": "abcdefghij.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abcdefghij",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": "Mozilla/5.0",
            },
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": "$default",
            "stage": stage,
            "time": "25/Nov/2026:16:49:35 +0000",
            "timeEpoch": 1795625375000,
        },
        "isBase64Encoded": is_base64,
    }
    if cookies:
        event["cookies"] = cookies
    if encoded_body is not None:
        event["body"] = encoded_body
    return event


def rest_api_v1_event(
    *,
    method: str = "POST",
    path: str = "/api/chatkit/session",
    body: Any = None,
    headers: dict[str, str] | None = None,
    source_ip: str = "203.0.113.7",
    stage: str = "prod",
    multi_value_headers: bool = True,
) -> dict[str, Any]:
    """A REST API (payload 1.0) proxy event."""
    encoded_body, is_base64 = _body(body, base64_encoded=False)
    all_headers = {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "Host": "abcdefghij.execute-api.eu-west-1.amazonaws.com",
        "User-Agent": "Mozilla/5.0",
        "X-Forwarded-For": source_ip,
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        **(headers or {}),
    }
    event: dict[str, Any] = {
        "version": "1.0",
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "queryStringParameters": None,
        "pathParameters": {"proxy": path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdefghij",
            "domainName": "abcdefghij.execute-api.eu-west-1.amazonaws.com",
            "httpMethod": method,
            "identity": {"sourceIp": source_ip, "userAgent": "Mozilla/5.0"},
            "path": f"/{stage}{path}",
            "protocol": "HTTP/1.1",
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "resourcePath": "/{proxy+}",
            "stage": stage,
        },
        "body": encoded_body,
        "isBase64Encoded": is_base64,
    }
    if multi_value_headers:
        event["multiValueHeaders"] = {key: [value] for key, value in all_headers.items()}
        event["multiValueQueryStringParameters"] = None
    return event


def function_url_event(
    *,
    method: str = "POST",
    path: str = "/api/chatkit/session",
    body: Any = None,
    cookies: list[str] | None = None,
    source_ip: str = "203.0.113.7",
) -> dict[str, Any]:
    """A Lambda Function URL event: payload 2.0 without a route or stage."""
    event = http_api_v2_event(method=method, path=path, body=body, cookies=cookies, source_ip=source_ip)
    event.pop("routeKey")
    context = event["requestContext"]
    for key in ("routeKey", "stage"):
        context.pop(key)
    context["domainName"] = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.eu-west-1.on.aws"
    context["domainPrefix"] = "abcdefghijklmnopqrstuvwxyz012345"
    event["headers"]["host"] = context["domainName"]
    return event


TARGET_GROUP_ARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/chat/abcdefg"


def alb_event(
    *,
    method: str = "POST",
    path: str = "/api/chatkit/session",
    body: Any = None,
    headers: dict[str, str] | None = None,
    x_forwarded_for: str = "203.0.113.7",
    multi_value_headers: bool = False,
) -> dict[str, Any]:
    """An Application Load Balancer target event, with or without multi-value headers."""
    encoded_body, is_base64 = _body(body, base64_encoded=False)
    all_headers = {
        "accept": "*/*",
        "content-type": "application/json",
        "host": "chat-alb-1334523864.eu-west-1.elb.amazonaws.com",
        "user-agent": "Mozilla/5.0",
        "x-amzn-trace-id": "Root=1-5c34e93e-4dea0086f9763ac0667b115a",
        "x-forwarded-for": x_forwarded_for,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        **(headers or {}),
    }
    event: dict[str, Any] = {
        "requestContext": {"elb": {"targetGroupArn": TARGET_GROUP_ARN}},
        "httpMethod": method,
        "path": path,
        "body": encoded_body or "",
        "isBase64Encoded": is_base64,
    }
    if multi_value_headers:
        event["multiValueHeaders"] = {key: [value] for key, value in all_headers.items()}
        event["multiValueQueryStringParameters"] = {}
    else:
        event["headers"] = all_headers
        event["queryStringParameters"] = {}
    return event


def sns_record(*, message: dict[str, Any]) -> dict[str, Any]:
    """One record of an SNS event, from a message in the form SNS POSTs over HTTPS.

    Lambda renames two fields (`SigningCertUrl`, `UnsubscribeUrl`), always has `Subject`
    (null when there is none) and `MessageAttributes`.
    """
    return {
        "EventVersion": "1.0",
        "EventSubscriptionArn": f"{message['TopicArn']}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        "EventSource": "aws:sns",
        "Sns": {
            "Type": message["Type"],
            "MessageId": message["MessageId"],
            "TopicArn": message["TopicArn"],
            "Subject": message.get("Subject"),
            "Message": message["Message"],
            "Timestamp": message["Timestamp"],
            "SignatureVersion": message.get("SignatureVersion"),
            "Signature": message.get("Signature"),
            "SigningCertUrl": message.get("SigningCertURL"),
            "UnsubscribeUrl": message.get("UnsubscribeURL"),
            "MessageAttributes": {},
        },
    }


def sns_event(*, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """An SNS event as Lambda receives it: one record per message."""
    return {"Records": [sns_record(message=message) for message in messages]}


def scheduled_event(*, time: str = "2026-11-25T03:17:00Z") -> dict[str, Any]:
    """What an EventBridge rule on a schedule sends its target."""
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time,
        "region": "eu-west-1",
        "resources": ["arn:aws:events:eu-west-1:123456789012:rule/chatkit-purge"],
        "detail": {},
    }


STACK_ID = "arn:aws:cloudformation:eu-west-1:123456789012:stack/chatkit/5b3b7d80-ac5e-11f0-8f8a-0a1b2c3d4e5f"
MIGRATIONS_FUNCTION = (
    "arn:aws:lambda:eu-west-1:123456789012:function:chatkit-DatabaseMigrationsFunction-Xy12Ab34Cd56"
)


def cloudformation_custom_resource_event(
    *,
    request_type: str,
    response_url: str,
    function_version: str = "7",
    old_function_version: str = "6",
    physical_resource_id: str = "DatabaseMigrations",
) -> dict[str, Any]:
    """A request CloudFormation sends to the Lambda function behind a custom resource
    (template.yaml's DatabaseMigrations): Create, Update (with the properties before) or
    Delete (with the ones the resource had)."""

    def properties(version: str) -> dict[str, Any]:
        return {
            "ServiceToken": f"{MIGRATIONS_FUNCTION}:deploy",
            "ServiceTimeout": "960",
            "FunctionVersion": f"{MIGRATIONS_FUNCTION}:{version}",
        }

    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": f"{MIGRATIONS_FUNCTION}:deploy",
        "ResponseURL": f"{response_url}/arn%3Aaws%3Acloudformation%3Aeu-west-1%3A123456789012%3Astack/"
        "chatkit/5b3b7d80-ac5e-11f0-8f8a-0a1b2c3d4e5f%7CDatabaseMigrations%7C0f6e1b9c"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261127T171500Z&X-Amz-SignedHeaders=host"
        "&X-Amz-Expires=7200&X-Amz-Signature=3f1e",
        "StackId": STACK_ID,
        "RequestId": "0f6e1b9c-2d4a-4f7e-9b1a-6c3d2e1f0a9b",
        "LogicalResourceId": "DatabaseMigrations",
        "ResourceType": "Custom::DatabaseMigrations",
        "ResourceProperties": properties(function_version),
    }
    if request_type != "Create":
        event["PhysicalResourceId"] = physical_resource_id
    if request_type == "Update":
        event["OldResourceProperties"] = properties(old_function_version)
    return event


class LambdaContext:
    """The context object the Lambda runtime passes the handler, with the attributes it has."""

    def __init__(
        self,
        *,
        aws_request_id: str = "8f5b3c4e-1b2a-4c3d-9e8f-0a1b2c3d4e5f",
        function_name: str = "chatkit-ChatKitFunction-Ab12Cd34Ef56",
        function_version: str = "$LATEST",
        timeout_seconds: float = 29,
    ) -> None:
        self.aws_request_id = aws_request_id
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = f"arn:aws:lambda:eu-west-1:123456789012:function:{function_name}"
        self.memory_limit_in_mb = "512"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "2026/11/27/[$LATEST]2f1c7a9b3e5d4c6f8a0b1c2d3e4f5a6b"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
