"""ASGI applications served by a real uvicorn on a free loopback port, in a thread, a
loopback server that never answers, and one that records what it is sent."""

import asyncio
import http.server
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served_on_loopback(
    application: Any, before_stop: Callable[[], Coroutine[Any, Any, None]] | None = None
) -> Iterator[int]:
    """uvicorn serving `application` until the block ends; the port. `before_stop` runs on the
    server's event loop before it stops (to close what the application keeps open on it)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(application, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        if before_stop is not None:
            asyncio.run_coroutine_threadsafe(before_stop(), loop).result(timeout=10)
        server.should_exit = True
        thread.join(timeout=10)
        loop.close()


@contextmanager
def blackhole() -> Iterator[int]:
    """A TCP server on a free loopback port that accepts every connection and never answers
    nor closes one until the block ends; the port. It is how a database, SES or OpenAI looks
    when it hangs: the connection is made, and then nothing comes back."""
    listener = socket.create_server(("127.0.0.1", 0))
    # accept() wakes up this often to see whether the block has ended.
    listener.settimeout(0.05)
    held: list[socket.socket] = []
    ended = threading.Event()

    def accept() -> None:
        while not ended.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        ended.set()
        thread.join(timeout=10)
        listener.close()
        for connection in held:
            connection.close()


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingServer:
    """What `recording_server` received, in order (header names in lower case); `status` is
    what it answers."""

    url: str
    requests: list[ReceivedRequest] = field(default_factory=list)
    status: int = 200


@contextmanager
def recording_server() -> Iterator[RecordingServer]:
    """An HTTP server on a free loopback port that records every request and answers each with
    the recorder's status and an empty body, as S3 answers a PUT to a pre-signed URL."""
    recorder = RecordingServer(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            recorder.requests.append(
                ReceivedRequest(
                    self.command,
                    self.path,
                    {name.lower(): value for name, value in self.headers.items()},
                    self.rfile.read(length),
                )
            )
            self.send_response(recorder.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_PUT = do_POST = do_GET = _record  # noqa: N815 (http.server's names)

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: the test reads what was received."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
