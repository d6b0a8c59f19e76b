"""What the caller gets when the database, OpenAI or SES refuses or hangs: a JSON 502 or 503
within REQUEST_TIME_BUDGET_SECONDS, and a transcript that could not be sent is recorded,
failed, and can be resent.

The settings build the database connection from DATABASE_URL and the budget once, at start:
a database fault is tested on a service started in a process of its own, which runs the
Lambda handler with real HTTP API events against a closed port, a server that never answers
(tests/loopback.py), or the test database while a lock is held on it. Every budget here is a
few seconds, so that each test is quick, and every reply must come within it.
"""

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection

from chatkit_api import mail
from chatkit_api.models import IdempotencyKey, RateLimitCounter, Transcript, TranscriptStatus
from chatkit_api.services import transcript_resend
from tests.conftest import STAFF, TOKEN
from tests.fake_chatkit import user_message
from tests.loopback import blackhole, free_port
from tests.settings_probe import python_run
from tests.test_transcript import LEAD, send, server_client

REPO = Path(__file__).resolve().parent.parent

SESSION = {"path": "/api/chatkit/session", "body": {}}
TRANSCRIPT_FROM_A_SERVER = {
    "path": "/api/chatkit/transcript",
    "body": {"threadId": "cthr_faults"},
    "headers": {"authorization": f"Bearer {TOKEN}"},
}

SERVE_EVENTS = """
import json, os, sys, time
from chatkit_site.lambda_handler import handler
from tests.lambda_events import body_of, http_api_v2_event

replies = []
for event in json.loads(sys.argv[1]):
    started = time.monotonic()
    reply = handler(http_api_v2_event(**event), None)
    replies.append(
        {
            "status": reply["statusCode"],
            "body": json.loads(body_of(reply)),
            "seconds": time.monotonic() - started,
        }
    )
print(json.dumps(replies), flush=True)
# A connection pool may still be trying the database in its threads: nothing to wait for.
os._exit(0)
"""


# Seconds: small enough for a quick test.
BUDGET = 3
# A database fault's budget: large enough for PostgreSQL's shortest connect timeout (2 s) to
# fit with room for a busy machine, and too small for that wait made twice.
DATABASE_BUDGET = 4


def served_with_database(database_url: str, *events: dict[str, Any], **environment: str) -> list[dict]:
    """Each event's reply (status, JSON body, seconds the handler took) from a fresh service whose
    database is `database_url` and whose time budget is DATABASE_BUDGET."""
    result = python_run(
        SERVE_EVENTS,
        json.dumps(events),
        environment={
            "DJANGO_SECRET_KEY": "x" * 50,
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "CRITICAL",
            "CHATKIT_WORKFLOW_ID": "wf_faults",
            "OPENAI_API_KEY": "sk-faults",
            # Nothing answers there: no request may get that far.
            "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
            "SES_TO_EMAIL": STAFF,
            "TRANSCRIPT_API_TOKEN": TOKEN,
            "REQUEST_TIME_BUDGET_SECONDS": str(DATABASE_BUDGET),
            **environment,
        },
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- the database ---------------------------------------------------------------------


DATABASE_UNAVAILABLE = {"error": "The database is unavailable right now. Try again later."}
NOT_COUNTED = {"error": "Requests cannot be counted right now, so none are accepted. Try again later."}


def assert_unavailable_within_the_budget(session: dict, transcript: dict) -> None:
    assert (session["status"], session["body"]) == (503, NOT_COUNTED)
    assert (transcript["status"], transcript["body"]) == (503, DATABASE_UNAVAILABLE)
    assert session["seconds"] < DATABASE_BUDGET
    assert transcript["seconds"] < DATABASE_BUDGET


# With the pool a request waits for a connection the pool makes; without one it connects itself.
POOLED = pytest.mark.parametrize("pool_size", ["10", "0"], ids=["pool", "no-pool"])


@POOLED
def test_a_database_that_refuses_connections_is_a_503(pool_size):
    # Nothing listens on the port: every connection is refused at once.
    session, transcript = served_with_database(
        f"postgres://postgres@127.0.0.1:{free_port()}/budget",
        SESSION,
        TRANSCRIPT_FROM_A_SERVER,
        DATABASE_POOL_SIZE=pool_size,
    )

    assert_unavailable_within_the_budget(session, transcript)


@POOLED
def test_a_database_that_never_answers_is_a_503_within_the_budget(pool_size):
    with blackhole() as port:
        session, transcript = served_with_database(
            f"postgres://postgres@127.0.0.1:{port}/budget",
            SESSION,
            TRANSCRIPT_FROM_A_SERVER,
            DATABASE_POOL_SIZE=pool_size,
        )

    assert_unavailable_within_the_budget(session, transcript)


def postgres_url(database: dict[str, Any]) -> str:
    return f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


@contextmanager
def locked_test_database() -> Iterator[str]:
    """The test database with the tables both calls write first locked by another connection,
    as a long migration or a stuck transaction would hold them; its URL."""
    database = connection.settings_dict
    if connection.vendor == "sqlite":
        locker = sqlite3.connect(database["NAME"], isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        try:
            yield f"sqlite:///{database['NAME']}"
        finally:
            locker.close()
        return
    url = postgres_url(database)
    with psycopg.connect(url) as locker:
        tables = ", ".join(model._meta.db_table for model in (RateLimitCounter, IdempotencyKey))
        locker.execute(f"LOCK TABLE {tables} IN ACCESS EXCLUSIVE MODE")
        yield url


@pytest.mark.django_db(transaction=True)
def test_a_locked_database_is_a_503_within_the_budget():
    # SQLite waits for the write lock, PostgreSQL for the table lock, until the statement's time is up.
    with locked_test_database() as url:
        session, transcript = served_with_database(url, SESSION, TRANSCRIPT_FROM_A_SERVER)

    assert_unavailable_within_the_budget(session, transcript)


# A statement longer than the statement timeout of a 1 s budget (200 ms).
LONG_STATEMENT = "from django.db import connection; connection.cursor().execute('SELECT pg_sleep(0.5)')"


def run_with_a_one_second_budget(*args: str) -> subprocess.CompletedProcess[str]:
    """`python *args` against the PostgreSQL test database, with a budget of 1 s."""
    if connection.vendor != "postgresql":
        pytest.skip("the statement timeout is PostgreSQL's (DATABASE_URL)")
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SECRET_KEY": "x" * 50,
            "DATABASE_URL": postgres_url(connection.settings_dict),
            "REQUEST_TIME_BUDGET_SECONDS": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.django_db(transaction=True)
def test_a_command_runs_past_the_requests_statement_timeout():
    # A migration or a purge takes as long as it takes.
    result = run_with_a_one_second_budget("manage.py", "shell", "-c", LONG_STATEMENT)

    assert result.returncode == 0, result.stderr


# A migration as long as the statement: run by a receiver of the signal `migrate` sends after
# the migrations, in the connection it migrated with.
MANAGE_EVENT = """
import json, sys
from chatkit_site.lambda_handler import handler
from django.db import connection
from django.db.models.signals import post_migrate

def long_migration(app_config, **kwargs):
    if app_config.label == "chatkit_api":
        exec(sys.argv[1])

post_migrate.connect(long_migration)
reply = handler({"manage": ["migrate", "--noinput"]}, None)
with connection.cursor() as cursor:
    cursor.execute("SHOW statement_timeout")
    [(after,)] = cursor.fetchall()
print(json.dumps({"reply": reply, "after": after}))
"""


@pytest.mark.django_db(transaction=True)
def test_a_lambda_manage_event_runs_past_it_and_leaves_it_to_the_requests_after():
    result = run_with_a_one_second_budget("-c", MANAGE_EVENT, LONG_STATEMENT)

    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["reply"]["exit_code"] == 0, outcome["reply"]["errors"]
    assert outcome["after"] == "200ms"


# --- OpenAI -----------------------------------------------------------------------------


@pytest.fixture
def small_budget(settings) -> int:
    """A budget of 2 s, with OpenAI's own timeout and retries as a deployment has them."""
    settings.REQUEST_TIME_BUDGET_SECONDS = 2
    settings.OPENAI_TIMEOUT_SECONDS = 15
    settings.OPENAI_MAX_RETRIES = 2
    return settings.REQUEST_TIME_BUDGET_SECONDS


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


@pytest.mark.django_db
def test_openai_that_never_answers_is_a_502_within_the_budget(
    api, fake_chatkit, settings, small_budget, before_agent_builder_shutdown
):
    with blackhole() as port:
        settings.OPENAI_BASE_URL = f"http://127.0.0.1:{port}/v1"
        response, seconds = timed(lambda: api.post("/api/chatkit/session", {}, format="json"))

    assert response.status_code == 502
    assert response.json() == {"error": "OpenAI timed out while creating a ChatKit session. Try again later."}
    assert seconds < small_budget


@pytest.mark.django_db
def test_a_failed_call_is_tried_again_within_the_budget(
    api, fake_chatkit, small_budget, before_agent_builder_shutdown
):
    fake_chatkit.fail("POST", "/v1/chatkit/sessions", 500, times=1)

    response, seconds = timed(lambda: api.post("/api/chatkit/session", {}, format="json"))

    assert response.status_code == 200
    assert len(fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")) == 2
    assert seconds < small_budget


@pytest.mark.django_db
def test_no_retry_waits_past_the_budget(api, fake_chatkit, small_budget, before_agent_builder_shutdown):
    fake_chatkit.fail("POST", "/v1/chatkit/sessions", 429, times=1)
    # OpenAI asks for a wait longer than the whole budget.
    fake_chatkit.retry_after_ms = "5000"

    response, seconds = timed(lambda: api.post("/api/chatkit/session", {}, format="json"))

    assert response.status_code == 502
    assert response.json() == {
        "error": "OpenAI answered HTTP 429 while creating a ChatKit session. Try again later."
    }
    assert seconds < small_budget
    assert len(fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")) == 1


@pytest.mark.django_db
def test_a_thread_openai_does_not_send_in_time_is_recorded_failed_and_can_be_resent(
    fake_chatkit, ses, small_budget
):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("brake pads, please")])
    hold = fake_chatkit.hold("GET", f"/v1/chatkit/threads/{thread.id}/items")

    response, seconds = timed(lambda: send(server_client(), {"threadId": thread.id, **LEAD}))

    assert response.status_code == 502
    assert response.json() == {
        "error": "OpenAI timed out while reading the thread's messages. Try again later."
    }
    assert seconds < small_budget
    transcript = Transcript.objects.get()
    assert (transcript.status, transcript.error) == (TranscriptStatus.FAILED, response.json()["error"])
    assert transcript.name == LEAD["name"]
    assert ses.sent() == []

    hold.release.set()
    transcript_resend(transcript=transcript)

    transcript.refresh_from_db()
    assert transcript.status == TranscriptStatus.SENT
    assert "User: brake pads, please" in ses.sent()[0].text


# --- SES --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_ses_that_never_answers_is_a_502_within_the_budget_and_the_transcript_can_be_resent(
    fake_chatkit, ses, settings
):
    settings.REQUEST_TIME_BUDGET_SECONDS = BUDGET
    settings.ALLOW_USER_RECAP = True
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("brake pads, please")])
    recap = {"threadId": thread.id, **LEAD, "mode": "recap"}

    with blackhole() as port:
        settings.AWS_SES_REGION_ENDPOINT_URL = f"http://127.0.0.1:{port}"
        response, seconds = timed(lambda: send(server_client(), recap))

    transcript = Transcript.objects.get()
    assert response.status_code == 502
    assert response.json() == {
        "error": "The transcript was recorded but the email could not be sent. It is kept and can be resent.",
        "id": transcript.id,
    }
    assert seconds < BUDGET
    assert transcript.status == TranscriptStatus.FAILED
    staff, visitor = transcript.emails.order_by("id")
    assert "ReadTimeoutError: Read timeout on endpoint URL" in staff.error
    # The staff message took its time: none was left to try the visitor's copy.
    assert visitor.error.startswith("Not sent: ")
    assert "REQUEST_TIME_BUDGET_SECONDS" in visitor.error
    assert transcript.error == f"Staff: {staff.error}\nVisitor copy: {visitor.error}"
    assert ses.sent() == []

    # SES answers again; a later instance opens its own connection to it.
    settings.AWS_SES_REGION_ENDPOINT_URL = None
    mail._open_connection.cache_clear()
    transcript_resend(transcript=transcript)

    transcript.refresh_from_db()
    assert transcript.status == TranscriptStatus.SENT
    assert [sent.destinations for sent in ses.sent()] == [[STAFF], [LEAD["email"]]]
