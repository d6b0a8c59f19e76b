"""Log records that say nothing an operator can act on."""

import logging


class EndedIteratorTaskFilter(logging.Filter):
    """Drops asyncio's "Task exception was never retrieved" for a task that ended with
    StopAsyncIteration.

    When a streamed answer stops early (the visitor went away, the deadline passed),
    openai-chatkit leaves the tasks that read the run's two event streams behind; stopping
    the run ends them with StopAsyncIteration, which nobody collects, and asyncio reports each
    at ERROR when it is garbage-collected. Any other uncollected task error is still logged.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exception = record.exc_info[1] if record.exc_info else None
        ended = isinstance(exception, StopAsyncIteration)
        return not (ended and record.getMessage().startswith("Task exception was never retrieved"))
