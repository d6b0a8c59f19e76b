"""The ASGI application under a real uvicorn on loopback, as `make run` and `make serve` run
it: answers stream while the agent writes them, and the pages and their files are served."""

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connections

from chatkit_api import openai_gateway, thread_titles
from chatkit_api.models import ChatKitThread
from chatkit_site.asgi import application
from tests.chatkit_protocol import ChatKitBrowser, assistant_texts, sse_events, thread_id_of, user_input
from tests.fake_model import Say, ScriptedModel, Wait
from tests.fake_responses import ANSWER, TITLE, FakeResponses
from tests.loopback import blackhole, served_on_loopback
from tests.test_attachments import PNG

# The server answers from threads of its own, with connections of their own: data is committed.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def served(settings) -> Iterator[int]:
    """uvicorn serving the ASGI application on a free loopback port; the port."""
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    # The server's requests close their connections as in production (the suite keeps its own
    # open), so that none outlives the test.
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)
    database = connections.settings["default"]
    max_age, database["CONN_MAX_AGE"] = database["CONN_MAX_AGE"], 0
    # The server's loop ends with the test, and the answers' OpenAI client with it.
    with served_on_loopback(application, before_stop=openai_gateway.async_client_close) as port:
        yield port
    database["CONN_MAX_AGE"] = max_age
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)


def test_the_application_loads_as_a_server_loads_it():
    # uvicorn imports it in a process where nothing has set Django up.
    result = subprocess.run(
        [sys.executable, "-c", "import chatkit_site.asgi"],
        cwd=Path(__file__).resolve().parent.parent,
        env={"PATH": os.environ["PATH"], "DJANGO_DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def _ask_a_held_back_model(
    port: int, model: ScriptedModel
) -> tuple[threading.Event, http.client.HTTPConnection, http.client.HTTPResponse]:
    """A question whose answer the scripted model holds back until the event is set; the reply
    as soon as its headers arrive."""
    release = threading.Event()
    model.script.append(Wait(release, then=Say("Pads are £89 fitted.")))
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"type": "threads.create", "params": {"input": user_input("Price for pads?")}})
    connection.request(
        "POST",
        "/api/chatkit",
        body,
        {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"},
    )
    return release, connection, connection.getresponse()


def test_the_first_words_arrive_while_the_agent_still_writes(served, self_hosted):
    release, connection, response = _ask_a_held_back_model(served, self_hosted)

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
    assert b"chatkitFetch" in script_body


def _ask(port: int, body: dict, cookie: str = "") -> tuple[list[dict], str]:
    """One ChatKit request to the server; its events and the visitor cookie it set."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}"}
    if cookie:
        headers["Cookie"] = cookie
    connection.request("POST", "/api/chatkit", json.dumps(body), headers)
    response = connection.getresponse()
    events = sse_events(response.read())
    connection.close()
    assert response.status == 200
    return events, (response.getheader("Set-Cookie") or "").partition(";")[0] or cookie


def test_answers_share_one_openai_client_and_its_connection(served, fake_responses):
    # A connection to OpenAI costs a TLS handshake: answers on the server's loop keep theirs.
    first, cookie = _ask(served, {"type": "threads.create", "params": {"input": user_input("Pads?")}})
    thread_id = thread_id_of(first)
    params = {"thread_id": thread_id, "input": user_input("Discs?")}
    second, _ = _ask(served, {"type": "threads.add_user_message", "params": params}, cookie)

    assert assistant_texts(first) == assistant_texts(second) == [ANSWER]
    assert len(fake_responses.connections) == 2
    assert len(set(fake_responses.connections)) == 1


def test_an_answer_holds_no_pooled_connection_while_the_model_writes(served, self_hosted):
    database = connections["default"]
    if not database.settings_dict["OPTIONS"].get("pool"):
        pytest.skip("the connection pool is PostgreSQL's (DATABASE_URL)")

    def borrowed() -> int:
        stats = database.pool.get_stats()
        return stats["pool_size"] - stats["pool_available"]

    idle = borrowed()
    release, connection, response = _ask_a_held_back_model(served, self_hosted)
    first = response.readline()
    while_writing = borrowed()
    release.set()
    rest = response.read()
    connection.close()

    assert assistant_texts(sse_events(first + rest)) == ["Pads are £89 fitted."]
    assert while_writing == idle


def test_a_session_call_answers_within_its_time_budget_when_openai_hangs(
    served, fake_chatkit, settings, before_agent_builder_shutdown
):
    # The budget runs on the server's loop and reaches the view in Django's thread for it.
    settings.REQUEST_TIME_BUDGET_SECONDS = 2
    settings.OPENAI_TIMEOUT_SECONDS = 15
    with blackhole() as openai_port:
        settings.OPENAI_BASE_URL = f"http://127.0.0.1:{openai_port}/v1"
        connection = http.client.HTTPConnection("127.0.0.1", served, timeout=30)
        started = time.monotonic()
        connection.request("POST", "/api/chatkit/session", "{}", {"Content-Type": "application/json"})
        response = connection.getresponse()
        body = json.loads(response.read())
        seconds = time.monotonic() - started
        connection.close()

    assert response.status == 502
    assert body == {"error": "OpenAI timed out while creating a ChatKit session. Try again later."}
    assert seconds < settings.REQUEST_TIME_BUDGET_SECONDS


def _raw_exchange(port: int, head: list[str], body: bytes) -> tuple[int, dict]:
    """Send a request as written (headers, then as much of the body as given) and read the
    reply without sending more."""
    request = "\r\n".join(
        [*head, "Host: 127.0.0.1", f"Origin: http://127.0.0.1:{port}", "Content-Type: application/json"]
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(request.encode() + b"\r\n\r\n" + body)
        reply = http.client.HTTPResponse(raw)
        reply.begin()
        return reply.status, json.loads(reply.read())


def test_a_body_declared_too_large_is_refused_before_it_is_sent(served, settings):
    settings.REQUEST_BODY_MAX_BYTES = 1000

    status, body = _raw_exchange(served, ["POST /api/chatkit HTTP/1.1", "Content-Length: 100000000"], b"")

    assert status == 413
    assert body == {"error": "The request body is too large: at most 1000 bytes."}


def test_a_chunked_body_stops_being_read_at_the_limit(served, settings):
    settings.REQUEST_BODY_MAX_BYTES = 1000
    chunk = b"x" * 1500

    # One chunk past the limit, and the body never ends: the reply comes all the same.
    status, body = _raw_exchange(
        served,
        ["POST /api/chatkit HTTP/1.1", "Transfer-Encoding: chunked"],
        f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n",
    )

    assert status == 413
    assert body == {"error": "The request body is too large: at most 1000 bytes."}


def test_a_chunked_body_within_the_limit_is_read(served, self_hosted, settings):
    settings.REQUEST_BODY_MAX_BYTES = 1000
    self_hosted.script.append(Say("Pads are £89 fitted."))
    question = json.dumps({"type": "threads.create", "params": {"input": user_input("Pads?")}}).encode()
    halves = (question[:40], question[40:])
    chunked = b"".join(f"{len(half):x}\r\n".encode() + half + b"\r\n" for half in halves) + b"0\r\n\r\n"
    connection = http.client.HTTPConnection("127.0.0.1", served, timeout=30)

    connection.putrequest("POST", "/api/chatkit")
    for name, value in (
        ("Transfer-Encoding", "chunked"),
        ("Content-Type", "application/json"),
        ("Origin", f"http://127.0.0.1:{served}"),
    ):
        connection.putheader(name, value)
    connection.endheaders(chunked)
    response = connection.getresponse()
    events = sse_events(response.read())
    connection.close()

    assert response.status == 200
    assert assistant_texts(events) == ["Pads are £89 fitted."]


def _call(port: int, body: dict, cookie: str) -> dict:
    """One ChatKit request answered with JSON, as the visitor with `cookie`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json", "Origin": f"http://127.0.0.1:{port}", "Cookie": cookie}
    connection.request("POST", "/api/chatkit", json.dumps(body), headers)
    response = connection.getresponse()
    reply = json.loads(response.read())
    connection.close()
    assert response.status == 200, reply
    return reply


def _eventually(check: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.02)


def _ask_with_a_held_back_title(port: int, fake: FakeResponses, settings) -> tuple[list[dict], str]:
    """The first message of a thread, answered in full while the title model holds its title back."""
    settings.CHATKIT_TITLE_MODEL = "gpt-4.1-nano"
    fake.title_release = threading.Event()
    events, cookie = _ask(
        port, {"type": "threads.create", "params": {"input": user_input("Pads for a 2015 Golf?")}}
    )
    assert assistant_texts(events) == [ANSWER]
    assert len(fake.title_requests) == 1
    assert not fake.title_answered.is_set()
    assert ChatKitThread.objects.get(pk=thread_id_of(events)).title == "Pads for a 2015 Golf?"
    return events, cookie


def test_a_slow_title_model_holds_back_no_event_and_the_title_comes_when_it_answers(
    served, fake_responses, settings
):
    try:
        # The answer streamed to its end while the title model was still writing.
        events, _ = _ask_with_a_held_back_title(served, fake_responses, settings)
    finally:
        fake_responses.title_release.set()

    # The server's loop lives on after the request: the title is written when the model answers.
    _eventually(lambda: ChatKitThread.objects.get(pk=thread_id_of(events)).title == TITLE)
    _eventually(lambda: not thread_titles._writing)


def test_a_thread_renamed_while_the_title_model_writes_keeps_the_visitors_name(
    served, fake_responses, settings
):
    try:
        events, cookie = _ask_with_a_held_back_title(served, fake_responses, settings)
        thread_id = thread_id_of(events)
        _call(
            served, {"type": "threads.update", "params": {"thread_id": thread_id, "title": "My Golf"}}, cookie
        )
    finally:
        fake_responses.title_release.set()

    _eventually(lambda: fake_responses.title_answered.is_set() and not thread_titles._writing)
    assert ChatKitThread.objects.get(pk=thread_id).title == "My Golf"


def test_an_attachment_larger_than_other_bodies_is_uploaded_through_the_server(
    served, self_hosted, settings, tmp_path
):
    settings.STORAGES = {
        **settings.STORAGES,
        "chatkit_attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    # The attachment is created as the test client's browser, at its own host name.
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    settings.REQUEST_BODY_MAX_BYTES = 1000
    large = PNG + b"\0" * 5000
    attachment = ChatKitBrowser().call(
        "attachments.create", name="large.png", size=len(large), mime_type="image/png"
    )
    url = urlsplit(attachment["upload_descriptor"]["url"])
    upload_path = f"{url.path}?{url.query}"
    connection = http.client.HTTPConnection("127.0.0.1", served, timeout=10)

    connection.request("PUT", upload_path, body=large, headers={"Content-Type": "image/png"})
    response = connection.getresponse()
    reply = json.loads(response.read())
    connection.close()
    settings.CHATKIT_ATTACHMENTS_MAX_BYTES = 100
    status, refused = _raw_exchange(served, [f"PUT {upload_path} HTTP/1.1", "Content-Length: 100000000"], b"")

    assert (response.status, reply) == (200, {"ok": True, "id": attachment["id"]})
    assert (tmp_path / "attachments" / attachment["id"]).read_bytes() == large
    assert status == 413
    assert refused == {"error": f"The request body is too large: at most {100 + 16 * 1024} bytes."}
