"""Log lines as JSON, each with the Lambda request id of the invocation that wrote it.

On Lambda every line the function writes is one CloudWatch event: a traceback written as text
is one event per line, and nothing ties a line to its invocation. `LOG_FORMAT=json` (the
default on Lambda) writes each record as one JSON object on one line, traceback included, with
`timestamp`, `level`, `logger`, `message`, the fields given with `extra=`, and `aws_request_id`
while the handler is handling an invocation (`invocation`). CloudWatch Logs Insights reads the
fields: `filter aws_request_id = "..."`, `filter level = "ERROR"`. The console handler's
redaction of secrets (chatkit_api.redaction) runs before the record is formatted.
"""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

_aws_request_id: ContextVar[str | None] = ContextVar("aws_request_id", default=None)

# What every record has; any other attribute was given with `extra=` and becomes a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@contextmanager
def invocation(context: Any) -> Iterator[None]:
    """Lines logged in the block (and in tasks and threads started with its context) carry the
    invocation's request id."""
    token = _aws_request_id.set(getattr(context, "aws_request_id", None))
    try:
        yield
    finally:
        _aws_request_id.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = _aws_request_id.get()
        if request_id:
            line["aws_request_id"] = request_id
        line.update(
            (name, value)
            for name, value in vars(record).items()
            if name not in _RECORD_ATTRIBUTES and name not in line
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # Escaped, every line break of a message or a traceback stays inside the one line.
        return json.dumps(line, default=str)
