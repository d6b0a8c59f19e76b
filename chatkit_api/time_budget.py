"""The time a request may take, and what is left of it for the outside calls it makes.

A request answered at once answers within REQUEST_TIME_BUDGET_SECONDS, failures included: API
Gateway gives up after 29 to 30 s, and an answer after that reaches nobody. The clock starts
as the request comes in (chatkit_api.middleware.TimeBudgetMiddleware). Each call to OpenAI
(chatkit_api.openai_gateway) and SES (chatkit_api.mail) asks `time_left()` before each attempt
and never waits past it; a tenth of the budget is kept back for what follows the last call,
recording what happened and answering. The database and Redis are bounded by their own
waits, set with each connection (STORE_WAIT_SECONDS).

Outside a request (a management command) there is no budget: each call has its own timeout.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# The part of the budget outside calls leave for recording what happened and answering.
ANSWER_SHARE = 0.1

# When the running request's outside calls must be done (time.monotonic()); None outside one.
_calls_end: ContextVar[float | None] = ContextVar("time_budget_calls_end", default=None)


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Run the block as a request of `seconds`: the outside calls it makes end in time."""
    token = _calls_end.set(time.monotonic() + seconds * (1 - ANSWER_SHARE))
    try:
        yield
    finally:
        _calls_end.reset(token)


@contextmanager
def statements_unbounded() -> Iterator[None]:
    """Run the block (a management command in a serving process: a Lambda `manage` event)
    without the statement timeout that connections carry for requests, so that a migration
    runs as long as it needs. The connection gets its own back afterwards, before a request
    can use it."""
    from django.db import connection

    if "statement_timeout" not in connection.settings_dict["OPTIONS"].get("options", ""):
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            # Back to the value the connection was opened with.
            cursor.execute("RESET statement_timeout")


def time_left() -> float | None:
    """Seconds the running request's outside calls may still take, 0 when none are left;
    None outside a request."""
    calls_end = _calls_end.get()
    if calls_end is None:
        return None
    return max(0.0, calls_end - time.monotonic())
