"""The deploy's migrations: a CloudFormation custom resource that this function backs.

template.yaml's `DatabaseMigrations` resource invokes `DatabaseMigrationsFunction` (the same
package, with Lambda's longest timeout) on every deploy that changes its code or
configuration, before the functions that serve traffic get the new code: Create and Update
run `migrate`, Delete does nothing (the database keeps its schema and its data). The answer
goes to the pre-signed ResponseURL CloudFormation gave: SUCCESS lets the deploy go on, FAILED
fails it and rolls it back.

An answer is always sent: when `migrate` fails, when anything else raises, and, if `migrate`
is still running, shortly before the function's timeout. Without one CloudFormation waits
until the resource's ServiceTimeout before it gives up.
"""

import contextvars
import http.client
import json
import logging
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from chatkit_api.redaction import secrets_redact

logger = logging.getLogger(__name__)

REQUEST_TYPES = frozenset({"Create", "Update", "Delete"})
# Each attempt to hand CloudFormation the answer (an HTTPS PUT to S3), and how many are made.
ANSWER_TIMEOUT_SECONDS = 10
ANSWER_ATTEMPTS = 3
# A migrate still running this long before the function's timeout is answered as failed: time
# for every attempt, and to spare; a quarter of the time left for a function whose timeout is
# shorter than four times that.
TIMEOUT_MARGIN_SECONDS = ANSWER_TIMEOUT_SECONDS * ANSWER_ATTEMPTS + 5
# CloudFormation takes at most 4 KB of answer; the end of what migrate said is what matters.
REASON_MAX_CHARS = 1500


class CustomResourceAnswerFailed(Exception):
    """CloudFormation's ResponseURL could not be reached: the deploy waits until the resource's
    ServiceTimeout, and fails then."""


def is_custom_resource_event(event: dict[str, Any]) -> bool:
    return event.get("RequestType") in REQUEST_TYPES and all(
        isinstance(event.get(key), str)
        for key in ("ResponseURL", "StackId", "RequestId", "LogicalResourceId")
    )


def _put(url: str, body: bytes) -> None:
    if not url.startswith(("https://", "http://")):
        raise CustomResourceAnswerFailed(f"The ResponseURL is not an HTTP(S) URL: {url[:40]!r}")
    # The URL is pre-signed for a PUT without a content type: S3 refuses one that has one.
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": ""})  # noqa: S310
    with urllib.request.urlopen(request, timeout=ANSWER_TIMEOUT_SECONDS) as response:  # noqa: S310
        response.read()


class _Answer:
    """The one answer a request gets: the first of the outcome and the timeout's."""

    def __init__(self, event: dict[str, Any], context: Any) -> None:
        self._event = event
        self._log_stream = getattr(context, "log_stream_name", None)
        # Held while an answer is on its way, so that the other waits for it, then sends none.
        self._lock = threading.Lock()
        self.status: str | None = None

    def send(self, status: str, reason: str, *, redact: bool = True) -> str:
        """Send the answer unless one was sent; the status CloudFormation got. `redact=False`
        when the settings, which redaction reads, could not be loaded."""
        with self._lock:
            if self.status is not None:
                logger.warning("Already answered %s; not answering %s: %s", self.status, status, reason)
                return self.status
            self.status = status
            reason = secrets_redact(reason.strip()) if redact else reason.strip()
            if len(reason) > REASON_MAX_CHARS:
                reason = "..." + reason[-REASON_MAX_CHARS:]
            if self._log_stream:
                reason = f"{reason} (log stream {self._log_stream})"
            event = self._event
            body = json.dumps(
                {
                    "Status": status,
                    "Reason": reason,
                    # Kept from request to request: a new one would tell CloudFormation the
                    # resource was replaced, and have it delete the old one.
                    "PhysicalResourceId": event.get("PhysicalResourceId") or event["LogicalResourceId"],
                    "StackId": event["StackId"],
                    "RequestId": event["RequestId"],
                    "LogicalResourceId": event["LogicalResourceId"],
                    "NoEcho": False,
                    "Data": {},
                }
            ).encode()
            for attempt in range(1, ANSWER_ATTEMPTS + 1):
                try:
                    _put(event["ResponseURL"], body)
                    break
                except (OSError, http.client.HTTPException) as exc:
                    logger.warning("Answering CloudFormation failed (attempt %s): %s", attempt, exc)
                    if attempt == ANSWER_ATTEMPTS:
                        raise CustomResourceAnswerFailed(
                            f"CloudFormation could not be answered: {exc}"
                        ) from exc
                    time.sleep(attempt)
            logger.info("Answered CloudFormation %s for %s: %s", status, event["RequestType"], reason)
            return status


def _timeout_watchdog(answer: _Answer, context: Any) -> threading.Timer | None:
    remaining_milliseconds = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_milliseconds is None:
        return None
    remaining = remaining_milliseconds() / 1000
    margin = min(TIMEOUT_MARGIN_SECONDS, remaining / 4)
    reason = (
        f"migrate was still running {margin:.0f} s before the function's timeout, and "
        "is stopped by it (PostgreSQL rolls back the migration it was in). Run it with more "
        'time: invoke the function with {"manage": "migrate --noinput"} until it ends, then deploy again.'
    )

    def answer_in_time() -> None:
        try:
            answer.send("FAILED", reason)
        except CustomResourceAnswerFailed:
            logger.exception("The deploy's migrations ran out of time, and CloudFormation could not be told")

    # The log lines it writes keep the invocation's request id.
    timer = threading.Timer(remaining - margin, contextvars.copy_context().run, args=(answer_in_time,))
    timer.daemon = True
    timer.start()
    return timer


def _outcome(event: dict[str, Any], migrate: Callable[[], dict[str, Any]]) -> tuple[str, str]:
    if event["RequestType"] == "Delete":
        return "SUCCESS", "Nothing to undo: the database keeps its schema and its data."
    # The stack names the version it published for this deploy. When a deploy rolls back, the
    # stack may ask for the previous version's migrations before its alias moves back: the
    # newer version that runs then has nothing to do (migrations are not reversed), and a
    # failure here would leave the stack unable to roll back. Invoked unqualified ($LATEST) it
    # always migrates.
    requested = str((event.get("ResourceProperties") or {}).get("FunctionVersion") or "").rsplit(":", 1)[-1]
    running = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "")
    if requested and running.isdigit() and requested != running:
        return "SUCCESS", (
            f"Not migrated: the stack asks for version {requested}'s migrations and this is version "
            f"{running}; migrations are not reversed."
        )
    result = migrate()
    return "SUCCESS", f"migrate: {result['output'].strip() or 'done'}"


def custom_resource_handle(
    *, event: dict[str, Any], context: Any, migrate: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Answer CloudFormation's request; raises (once it is answered) when the migrations or
    the answer failed, so that Lambda counts an error."""
    answer = _Answer(event, context)
    watchdog = _timeout_watchdog(answer, context) if event["RequestType"] != "Delete" else None
    failure: Exception | None = None
    try:
        status, reason = _outcome(event, migrate)
    except Exception as exc:
        logger.exception("The deploy's migrations failed")
        failure = exc
        status, reason = "FAILED", f"{type(exc).__name__}: {exc}"
    finally:
        if watchdog is not None:
            watchdog.cancel()
    sent = answer.send(status, reason)
    if failure is not None:
        raise failure
    return {"Status": sent, "Reason": reason}


def handler(event: Any, context: Any) -> Any:
    """DatabaseMigrationsFunction's entry point: the service's handler, loaded (Django, its
    settings, the secrets they read) in the invocation rather than at init, so that a start
    that fails still answers CloudFormation: FAILED, or SUCCESS for a Delete, which has nothing
    to undo. Without an answer CloudFormation would wait out the ServiceTimeout, and a first
    deploy's rollback would wait again and fail."""
    try:
        from chatkit_site.lambda_handler import handler as service_handler
    except Exception as exc:
        if isinstance(event, dict) and is_custom_resource_event(event):
            status = "SUCCESS" if event.get("RequestType") == "Delete" else "FAILED"
            # Only the exception's type: its message may quote a setting's value, and the
            # settings that redaction reads are what failed.
            reason = f"The function could not start ({type(exc).__name__}); its log says why."
            _Answer(event, context).send(status, reason, redact=False)
        raise
    return service_handler(event, context)
