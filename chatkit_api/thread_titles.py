"""Self-hosted thread titles written by a small model, when CHATKIT_TITLE_MODEL names one.

A thread is titled at once with the visitor's first message, cut short (chatkit_server). With
a title model, its first answer also starts a task that asks the model for a title of 3 to 6
words, beside the answer and never in its way: the answer's events do not wait for it, and
the title replaces the short one only if the thread still has it, so a name the visitor gave
the thread meanwhile stays. A model that fails, times out or answers nothing leaves the short
title, and the log says why.

Under an ASGI server the event loop outlives the request: a title the answer did not wait for
is written when the model answers. Under WSGI (runserver, apig-wsgi on Lambda) each request
runs a loop of its own that ends with it, so `titles_settle` gives the request's titles a
short while to finish before the loop ends, then cancels what is left; no task outlives its
loop.
"""

import asyncio
import logging
import re

from chatkit.store import NotFoundError
from django.conf import settings

from chatkit_api import openai_gateway
from chatkit_api.chatkit_store import database, thread_title_replace
from chatkit_api.exceptions import ServiceError
from chatkit_api.time_budget import time_left

logger = logging.getLogger(__name__)

TITLE_INSTRUCTIONS = (
    "You name conversations between a website's visitors and its assistant. Given the "
    "visitor's first message, answer with a title of 3 to 6 words that says what the visitor "
    "wants, in the message's language. Use your own words rather than quoting the message. "
    "Answer with the title only: no quotes, no final punctuation."
)
# The most of the visitor's message the title model reads: a title needs the gist.
MESSAGE_CHARACTERS = 2000
# A title's most words and characters, whatever the model answers.
TITLE_WORDS = 6
TITLE_CHARACTERS = 60
# Under WSGI, the longest a request waits at its end for titles still being written (within
# what is left of its time budget).
SETTLE_SECONDS = 2.0

# Titles being written, held here so that none is garbage-collected before it ends.
_writing: set["asyncio.Task[str | None]"] = set()


def title_start(
    *, visitor_id: str, thread_id: str, short_title: str, message: str
) -> "asyncio.Task[str | None] | None":
    """Start writing the thread's title from the visitor's first message, if a title model is
    set; the task ends with the title it wrote, or None."""
    model = settings.CHATKIT_TITLE_MODEL
    if not model:
        return None
    task = asyncio.create_task(
        _title_write(
            model=model, visitor_id=visitor_id, thread_id=thread_id, short_title=short_title, message=message
        ),
        name=f"title of {thread_id}",
    )
    _writing.add(task)
    task.add_done_callback(_writing.discard)
    return task


# What a model may wrap a title in: quotes of several languages, and Markdown.
_WRAPPING = " \t*#_`\"'\u201c\u201d\u2018\u2019\u00ab\u00bb"


def _tidy(answer: str) -> str:
    """The model's answer as a title: its first line, without a "Title:" label, quotes,
    markup or a final stop, at most TITLE_WORDS words and TITLE_CHARACTERS characters."""
    line = next((line for line in answer.splitlines() if line.strip()), "").strip(_WRAPPING)
    line = re.sub(r"^title\s*:\s*", "", line, flags=re.IGNORECASE).strip(_WRAPPING)
    words = line.rstrip(".!?:;,").split()
    return " ".join(words[:TITLE_WORDS])[:TITLE_CHARACTERS].rstrip()


async def _title_write(
    *, model: str, visitor_id: str, thread_id: str, short_title: str, message: str
) -> str | None:
    try:
        answer = await openai_gateway.thread_title_create(
            model=model, instructions=TITLE_INSTRUCTIONS, conversation=message[:MESSAGE_CHARACTERS]
        )
        title = _tidy(answer)
        if not title:
            logger.warning("Thread %s keeps its short title: the title model answered no title.", thread_id)
            return None
        written = await database(
            thread_title_replace, visitor_id=visitor_id, thread_id=thread_id, current=short_title, title=title
        )
    except ServiceError as exc:
        logger.warning("Thread %s keeps its short title: %s", thread_id, exc.message)
        return None
    except NotFoundError:
        logger.info("Thread %s was deleted while the title model wrote its title.", thread_id)
        return None
    except asyncio.CancelledError:
        logger.info(
            "Thread %s keeps its short title: its request ended before the title model answered.", thread_id
        )
        raise
    except Exception:
        # The thread was deleted meanwhile, the database failed: nothing the visitor waits on.
        logger.exception("Thread %s keeps its short title: writing the title failed.", thread_id)
        return None
    if not written:
        logger.info("Thread %s keeps the title it was given while the title model wrote one.", thread_id)
        return None
    return title


async def titles_settle() -> None:
    """Before the running event loop ends: the titles being written on it finish within
    SETTLE_SECONDS (and the request's time budget), or are cancelled and have ended when this
    returns."""
    loop = asyncio.get_running_loop()
    writing = [task for task in _writing if task.get_loop() is loop]
    if not writing:
        return
    left = time_left()
    seconds = SETTLE_SECONDS if left is None else min(SETTLE_SECONDS, left)
    _, unfinished = await asyncio.wait(writing, timeout=seconds)
    for task in unfinished:
        task.cancel()
    await asyncio.gather(*unfinished, return_exceptions=True)
