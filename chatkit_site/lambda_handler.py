"""AWS Lambda entry point: `chatkit_site.lambda_handler.handler`.

HTTP events of every kind (API Gateway REST and HTTP APIs, Function URLs, ALB) go to Django
through apig-wsgi. Other events are handled here: `{"manage": "migrate --noinput"}` runs one
of the management commands MANAGE_COMMANDS allows, SNS records (SES delivery notifications)
are recorded on their transcripts, an EventBridge schedule runs the retention purges
(transcripts, then self-hosted threads), `{"metrics": "transcripts"}` writes the transcript
backlog as CloudWatch metrics, and CloudFormation's requests run the deploy's migrations
(chatkit_site.deploy_migrations). Anything else is logged and answered with a clear error.
"""

import importlib
import itertools
import logging
import shlex
import time
from collections.abc import Callable, Iterable, Iterator
from io import StringIO
from typing import Any

from apig_wsgi import make_lambda_handler
from django.conf import settings

# Importing the WSGI module sets Django up: once per container, outside the request path.
from chatkit_site.wsgi import application  # isort: skip

# Registers the SnapStart hooks; harmless where SnapStart is off.
import chatkit_site.snapstart  # noqa: F401
from chatkit_api.redaction import secrets_redact
from chatkit_site.deploy_migrations import custom_resource_handle, is_custom_resource_event
from chatkit_site.logs import invocation

if settings.CHATKIT_MODE == "self_hosted":
    # The ChatKit and Agents SDKs take about a second to import; load them while Lambda sets
    # the container up rather than in the first visitor's request.
    importlib.import_module("chatkit_api.chatkit_server")

logger = logging.getLogger(__name__)
request_logger = logging.getLogger("chatkit_site.requests")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


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


def _apply_path_prefix(environ: dict[str, Any]) -> None:
    """Move a stage or base-path prefix from the path into SCRIPT_NAME.

    Django then routes `/api/...` whatever the prefix, and the URLs it writes (admin
    redirects, the visitor cookie's path) keep the prefix the browser used.
    """
    context = environ.get("apig_wsgi.request_context") or {}
    path = environ["PATH_INFO"]
    if "http" in context:
        stage = context.get("stage")
        if stage and stage != "$default" and (path == f"/{stage}" or path.startswith(f"/{stage}/")):
            environ["SCRIPT_NAME"] = f"/{stage}"
            environ["PATH_INFO"] = path[len(stage) + 1 :] or "/"
        return
    # REST APIs give the path without the stage, and the full one in the request context.
    full_path = context.get("path") or ""
    if len(full_path) > len(path) and full_path.endswith(path):
        environ["SCRIPT_NAME"] = full_path[: -len(path)].rstrip("/")


def _set_cookie_spellings() -> Iterator[str]:
    """`Set-Cookie`, `set-Cookie`, `sEt-Cookie`, ...: distinct keys, the same header."""
    letters = "set-cookie"
    for flags in itertools.product((False, True), repeat=len(letters)):
        yield "".join(c.upper() if upper else c for c, upper in zip(letters, flags, strict=True))


def _with_clean_set_cookie_headers(
    start_response: Callable[..., Any], *, distinct_names: bool
) -> Callable[..., Any]:
    """Django writes each Set-Cookie value with the space that follows "Set-Cookie:" on the
    wire; API Gateway passes it through, so it is removed here.

    `distinct_names`: an ALB target group without multi-value headers takes one value per
    header name; names are case-insensitive, so each cookie gets its own spelling.
    """

    def wrapped(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        spellings = _set_cookie_spellings()
        cleaned = []
        for name, value in headers:
            if name.lower() == "set-cookie":
                name, value = (next(spellings) if distinct_names else name), value.strip()
            cleaned.append((name, value))
        return start_response(status, cleaned, exc_info)

    return wrapped


def with_platform_environ(app: WSGIApp) -> WSGIApp:
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        client_ip = platform_client_ip(environ)
        if client_ip:
            environ["REMOTE_ADDR"] = client_ip
        _apply_path_prefix(environ)
        context = environ.get("apig_wsgi.request_context") or {}
        single_value_alb = "elb" in context and not environ.get("apig_wsgi.multi_value_headers")
        return app(environ, _with_clean_set_cookie_headers(start_response, distinct_names=single_value_alb))

    return wrapped


def make_http_handler(app: WSGIApp) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    # Binary support: static files and compressed responses go back base64-encoded.
    return make_lambda_handler(with_platform_environ(app), binary_support=True)


_http_handler = make_http_handler(application)


def _is_http_event(event: dict[str, Any]) -> bool:
    return "httpMethod" in event or "http" in (event.get("requestContext") or {})


def _handle_http(event: dict[str, Any], context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    is_rest_api = event.get("version", "1.0") == "1.0" and "elb" not in (event.get("requestContext") or {})
    if is_rest_api and not event.get("multiValueHeaders"):
        # REST APIs accept multi-value responses whatever the request looked like; asking
        # for one keeps every Set-Cookie header instead of only the last.
        event = {**event, "multiValueHeaders": {k: [v] for k, v in (event.get("headers") or {}).items()}}
    response = _http_handler(event, context)
    method = event.get("httpMethod") or event["requestContext"]["http"]["method"]
    path = event.get("rawPath") or event.get("path")
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    # As JSON (LOG_FORMAT), the fields are the line's own, beside its aws_request_id.
    request_logger.info(
        "%s %s %s %s ms",
        method,
        path,
        response["statusCode"],
        duration_ms,
        extra={"method": method, "path": path, "status": response["statusCode"], "duration_ms": duration_ms},
    )
    return response


# The management commands a `manage` event may run, one per line: adding one is adding its
# name here (and to the list in docs/aws.md, which a test compares with this). Whoever may
# invoke the function may run these, with any arguments; what is not here is refused, among
# others `shell` (any code), `diffsettings` (it prints the secrets) and `dumpdata` (every
# transcript).
MANAGE_COMMANDS = frozenset(
    {
        "admin_sign_in_unlock",
        "check",
        "ensure_superuser",
        "import_managed_threads",
        "migrate",
        "purge_threads",
        "purge_transcripts",
        "resend_transcript",
        "showmigrations",
    }
)


# Options a `manage` event may not give, by command: each would let whoever may invoke the
# function take what the list keeps from them. A password from the function's environment or
# package is one the invoker can know (the event names a secret instead), and `--to` would mail
# any transcript anywhere (a resend from an invocation goes to the configured inboxes).
MANAGE_REFUSED_OPTIONS = {
    "ensure_superuser": frozenset({"--password-env", "--password-file"}),
    "resend_transcript": frozenset({"--to"}),
}


class ManagementCommandFailed(Exception):
    """A `manage` event's command failed: raised, so that Lambda counts an error (an alarm on
    the function's errors sees it, an asynchronous invocation such as the scheduled purge is
    retried), with what the command said in the message the invoker gets back."""

    def __init__(self, command: str, exit_code: int, output: str, errors: str) -> None:
        # The invoker reads it and the runtime logs it as it is, past the logging filter.
        said = secrets_redact((errors or output).strip()[-2000:]) or "no output"
        super().__init__(f"manage {command} exited {exit_code}: {said}")


class MalformedManageEvent(ValueError):
    """A `manage` event whose value is not a command line: nothing runs, and the invoker reads
    what was expected."""

    def __init__(self, problem: str) -> None:
        super().__init__(
            f'{problem}. "manage" takes a command line ("migrate --noinput") or a list of '
            'strings (["migrate", "--noinput"]).'
        )


class ManageCommandNotAllowed(Exception):
    """A `manage` event naming a command that is not in MANAGE_COMMANDS, or giving it an
    option MANAGE_REFUSED_OPTIONS names: nothing runs."""

    def __init__(self, command: str, option: str | None = None) -> None:
        if option is not None:
            super().__init__(f"manage {command} {option} is not allowed in a manage event.")
            return
        super().__init__(
            f"manage {command} is not allowed: a manage event may run "
            f"{', '.join(sorted(MANAGE_COMMANDS))} (MANAGE_COMMANDS in chatkit_site/lambda_handler.py)."
        )


def _refused_option(command: str, args: list[str]) -> str | None:
    """The first option of `args` that MANAGE_REFUSED_OPTIONS refuses `command`, written in
    full, as `--to=x` or abbreviated (argparse takes any unambiguous prefix)."""
    refused = MANAGE_REFUSED_OPTIONS.get(command, frozenset())
    for arg in args:
        name = arg.partition("=")[0]
        if name.startswith("--") and len(name) > 2:
            for option in refused:
                if option.startswith(name):
                    return option
    return None


def _manage_arguments(value: Any) -> list[str]:
    """The command line a `manage` event gives, split into arguments; MalformedManageEvent or
    ManageCommandNotAllowed when it cannot run."""
    if isinstance(value, str):
        try:
            args = shlex.split(value)
        except ValueError as exc:
            raise MalformedManageEvent(
                f"The command line could not be split into arguments ({exc})"
            ) from None
    elif isinstance(value, list) and all(isinstance(arg, str) for arg in value):
        args = list(value)
    else:
        raise MalformedManageEvent(f"A value of type {type(value).__name__} is not a command line")
    if not args or not args[0].strip():
        raise MalformedManageEvent("No command given")
    if args[0] not in MANAGE_COMMANDS:
        raise ManageCommandNotAllowed(args[0])
    option = _refused_option(args[0], args[1:])
    if option is not None:
        raise ManageCommandNotAllowed(args[0], option)
    return args


def _handle_manage(command: Any) -> dict[str, Any]:
    """Run a management command, e.g. `{"manage": "migrate --noinput"}`, without the request
    time budget's statement timeout; ManagementCommandFailed if it fails."""
    from django.core.management import call_command

    from chatkit_api.time_budget import statements_unbounded

    args = _manage_arguments(command)
    stdout, stderr = StringIO(), StringIO()
    try:
        with statements_unbounded():
            call_command(*args, stdout=stdout, stderr=stderr)
        exit_code = 0
    except SystemExit as exc:
        exit_code = exc.code if isinstance(exc.code, int) else 1
    # A command's failure (bad arguments, its own errors) is reported with what the command
    # wrote, as the invocation's error.
    except Exception as exc:
        exit_code = getattr(exc, "returncode", 1)
        stderr.write(f"{type(exc).__name__}: {exc}\n")
    logger.info("manage %s exited %s", args[0], exit_code)
    if exit_code != 0:
        raise ManagementCommandFailed(args[0], exit_code, stdout.getvalue(), stderr.getvalue())
    return {"exit_code": exit_code, "output": stdout.getvalue(), "errors": stderr.getvalue()}


def _is_sns_event(event: dict[str, Any]) -> bool:
    records = event.get("Records") or []
    return bool(records) and all(
        isinstance(record, dict) and record.get("EventSource") == "aws:sns" for record in records
    )


def _is_scheduled_event(event: dict[str, Any]) -> bool:
    """An EventBridge rule on a schedule: the only schedule this function has is the purge."""
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


# What the scheduled purge runs: transcripts, then self-hosted threads (kept in any mode: a
# deployment that went back to managed mode still holds the threads of its self-hosted days).
SCHEDULED_PURGES = ("purge_transcripts", "purge_threads")


def _handle_scheduled_purge() -> dict[str, Any]:
    """Every purge, each even when one before it failed; the first failure fails the invocation."""
    results, failures = [], []
    for command in SCHEDULED_PURGES:
        try:
            results.append(_handle_manage([command]))
        except ManagementCommandFailed as failed:
            failures.append(failed)
    if failures:
        raise failures[0]
    return {
        "exit_code": 0,
        "output": "".join(result["output"] for result in results),
        "errors": "".join(result["errors"] for result in results),
    }


def handler(event: Any, context: Any) -> Any:
    with invocation(context):
        return _handle(event, context)


def _handle(event: Any, context: Any) -> Any:
    if isinstance(event, dict):
        if _is_http_event(event):
            return _handle_http(event, context)
        if "manage" in event:
            return _handle_manage(event["manage"])
        if is_custom_resource_event(event):
            return custom_resource_handle(
                event=event, context=context, migrate=lambda: _handle_manage(["migrate", "--noinput"])
            )
        if _is_sns_event(event):
            # Imported here: models can only be imported once the WSGI import set Django up.
            from chatkit_api.delivery import sns_lambda_event_handle

            return sns_lambda_event_handle(event=event)
        if _is_scheduled_event(event):
            return _handle_scheduled_purge()
        if event.get("metrics") == "transcripts":
            from chatkit_site.cloudwatch_metrics import transcript_metrics

            return transcript_metrics()
    described = sorted(event)[:10] if isinstance(event, dict) else type(event).__name__
    logger.error("Unsupported Lambda event: %s", described)
    return {
        "ok": False,
        "error": (
            "Unsupported event. Expected an HTTP event (API Gateway, Function URL, ALB), "
            "an SNS notification, a scheduled event, a CloudFormation custom resource request, "
            '{"manage": "<command>"} or {"metrics": "transcripts"}.'
        ),
    }
