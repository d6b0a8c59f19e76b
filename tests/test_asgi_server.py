"""The ASGI application under a real uvicorn on loopback, as `make run` and `make serve` run
it: answers stream while the agent writes them, and the pages and their files are served."""

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connections

from chatkit_site.asgi import application
from tests.chatkit_protocol import assistant_texts, sse_events, user_input
from tests.fake_model import Say, Wait

# The server answers from threads of its own, with connections of their own: data is committed.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def served(settings) -> Iterator[int]:
    """uvicorn serving the ASGI application on a free loopback port; the port."""
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # The server's requests close their connections as in production (the suite keeps its own
    # open), so that none outlives the test.
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
    database = connections.settings["default"]
    max_age, database["CONN_MAX_AGE"] = database["CONN_MAX_AGE"], 0
    server = uvicorn.Server(uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield port
    server.should_exit = True
    thread.join(timeout=10)
    database["CONN_MAX_AGE"] = max_age
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)


def test_the_first_words_arrive_while_the_agent_still_writes(served, self_hosted):
    release = threading.Event()
    self_hosted.script.append(Wait(release, then=Say("Pads are £89 fitted.")))
    connection = http.client.HTTPConnection("127.0.0.1", served, timeout=30)
    body = json.dumps({"type": "threads.create", "params": {"input": user_input("Price for pads?")}})

    connection.request(
        "POST",
        "/api/chatkit",
        body,
        {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{served}"},
    )
    response = connection.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream"
    assert response.getheader("X-Accel-Buffering") == "no"
    first = response.readline()
    model_still_waiting = not release.is_set()
    release.set()
    rest = response.read()
    connection.close()

    assert b'"type":"thread.created"' in first
    assert model_still_waiting
    assert assistant_texts(sse_events(first + rest)) == ["Pads are £89 fitted."]
    assert "chatkit_visitor=" in (response.getheader("Set-Cookie") or "")


def test_pages_and_their_files_are_served(served, settings):
    settings.TRY_IT_PAGE_ENABLED = True
    # No collected files in the test run: WhiteNoise reads them where they are.
    settings.WHITENOISE_USE_FINDERS = True
    settings.WHITENOISE_AUTOREFRESH = True
    connection = http.client.HTTPConnection("127.0.0.1", served, timeout=30)

    connection.request("GET", "/")
    page = connection.getresponse()
    page_body = page.read().decode()
    connection.request("GET", "/static/chatkit_api/try-it.js")
    script = connection.getresponse()
    script_body = script.read()
    connection.close()

    assert page.status == 200
    assert "<openai-chatkit" in page_body
    assert script.status == 200
    assert b"withPageAddress" in script_body
