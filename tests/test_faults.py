"""What the caller gets when the database, OpenAI or SES refuses or hangs: a JSON 502 or 503,
and a transcript that could not be sent is recorded, failed, and can be resent.

A database that fails is started with the service, in a process of its own that runs the
Lambda handler with real HTTP API events, pointed at a closed port or at a server that never
answers (tests/loopback.py): the settings build the connection from DATABASE_URL once.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.conftest import STAFF, TOKEN
from tests.loopback import free_port

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


def served_with_database(database_url: str, *events: dict[str, Any], **environment: str) -> list[dict]:
    """Each event's reply (status, JSON body, seconds the handler took) from a fresh service whose
    database is `database_url`."""
    result = subprocess.run(
        [sys.executable, "-c", SERVE_EVENTS, json.dumps(events)],
        cwd=REPO,
        env={
            "PATH": os.environ["PATH"],
            "DJANGO_SECRET_KEY": "x" * 50,
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "CRITICAL",
            "CHATKIT_WORKFLOW_ID": "wf_faults",
            "OPENAI_API_KEY": "sk-faults",
            # Nothing answers there: no request may get that far.
            "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
            "SES_TO_EMAIL": STAFF,
            "TRANSCRIPT_API_TOKEN": TOKEN,
            **environment,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- the database ---------------------------------------------------------------------


DATABASE_UNAVAILABLE = {"error": "The database is unavailable right now. Try again later."}
NOT_COUNTED = {"error": "Requests cannot be counted right now, so none are accepted. Try again later."}


def test_a_database_that_refuses_connections_is_a_503():
    # Nothing listens on the port: every connection is refused at once.
    session, transcript = served_with_database(
        f"postgres://postgres@127.0.0.1:{free_port()}/budget",
        SESSION,
        TRANSCRIPT_FROM_A_SERVER,
        DATABASE_POOL_SIZE="0",
    )

    assert (session["status"], session["body"]) == (503, NOT_COUNTED)
    assert (transcript["status"], transcript["body"]) == (503, DATABASE_UNAVAILABLE)
