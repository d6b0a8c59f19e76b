"""A small stand-in for OpenAI's ChatKit API, served on loopback for the real `openai` SDK.

Shapes follow OpenAI's published OpenAPI spec (`ChatSessionResource`, `ThreadResource`,
`ThreadListResource`, `ThreadItemListResource`): pagination by `after`/`before`/`has_more` with
`limit` at most 100 and `order` defaulting to `desc`, errors as `{"error": {...}}`.

It also answers `POST /v1/responses` with a streamed reply (the spec's `ResponseStreamEvent`
server-sent events), which is how a self-hosted agent's model reaches OpenAI.
"""

import itertools
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "sk-test-fake-chatkit-key"
BASE_TIME = 1_764_000_000


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Hold:
    """Requests that match wait here until `release` is set; `arrived` says one is waiting."""

    arrived: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class Failure:
    """What matching requests answer instead, from the `skip`+1-th one on, `times` times (None:
    for good). Server errors and rate limits tell the SDK to retry at once, so tests stay fast."""

    status: int
    body: Any
    skip: int = 0
    times: int | None = None
    seen: int = 0

    def applies(self) -> bool:
        self.seen += 1
        if self.seen <= self.skip:
            return False
        return self.times is None or self.seen <= self.skip + self.times


@dataclass
class FakeThread:
    id: str
    user: str
    items: list[dict[str, Any]] = field(default_factory=list)
    created_at: int = BASE_TIME
    title: str | None = None


class FakeChatKit:
    def __init__(self) -> None:
        self.threads: dict[str, FakeThread] = {}
        self.requests: list[RecordedRequest] = []
        # (method, path prefix) -> what matching requests answer instead.
        self.failures: dict[tuple[str, str], Failure] = {}
        self.holds: dict[tuple[str, str], Hold] = {}
        # The wait a server error or a rate limit asks for; short, so that retries are quick.
        self.retry_after_ms = "1"
        # What the model answers next, one entry per `POST /v1/responses`: a text, or a
        # (function name, arguments) call. When it runs out, the model echoes.
        self.model_turns: deque[str | tuple[str, dict[str, Any]]] = deque()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- test API -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def reset(self) -> None:
        with self._lock:
            self.threads.clear()
            self.requests.clear()
            self.failures.clear()
            self.retry_after_ms = "1"
            self.model_turns.clear()
            for hold in self.holds.values():
                hold.release.set()
            self.holds.clear()

    UPSTREAM_BROKE = {"error": {"message": "upstream broke", "type": "server_error"}}

    def fail(
        self,
        method: str,
        path_prefix: str,
        status: int,
        body: Any = None,
        *,
        skip: int = 0,
        times: int | None = None,
    ) -> None:
        """Matching requests answer `status` instead: after the first `skip`, `times` times."""
        self.failures[(method, path_prefix)] = Failure(
            status=status,
            body=body if body is not None else self.UPSTREAM_BROKE,
            skip=skip,
            times=times,
        )

    def hold(self, method: str, path_prefix: str) -> Hold:
        """Keep matching requests waiting, e.g. to look at the service while it is mid-request."""
        hold = self.holds[(method, path_prefix)] = Hold()
        return hold

    def add_thread(
        self,
        *,
        user: str,
        items: list[dict[str, Any]],
        thread_id: str | None = None,
        created_at: int | None = None,
        title: str | None = None,
    ) -> FakeThread:
        number = next(self._ids)
        thread = FakeThread(
            id=thread_id or f"cthr_{number:06d}",
            user=user,
            created_at=BASE_TIME if created_at is None else created_at,
            title=title,
        )
        for position, item in enumerate(items):
            item.setdefault("id", f"cthi_{thread.id}_{position:06d}")
            item.setdefault("object", "chatkit.thread_item")
            item.setdefault("thread_id", thread.id)
            item.setdefault("created_at", thread.created_at + position)
        thread.items = items
        self.threads[thread.id] = thread
        return thread

    def add_items(self, thread: FakeThread, items: list[dict[str, Any]]) -> None:
        """New items at the end of a thread, as a conversation that goes on."""
        start = len(thread.items)
        for position, item in enumerate(items, start):
            item.setdefault("id", f"cthi_{thread.id}_{position:06d}")
            item.setdefault("object", "chatkit.thread_item")
            item.setdefault("thread_id", thread.id)
            item.setdefault("created_at", thread.created_at + position)
        thread.items.extend(items)

    def requests_to(self, method: str, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    # --- serving --------------------------------------------------------------

    def start(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; without this, Nagle's algorithm
            # and delayed ACKs add ~40 ms to every response on loopback.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                fake._dispatch(self, "GET")

            def do_POST(self) -> None:
                fake._dispatch(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        request = RecordedRequest(
            method=method,
            path=url.path,
            query={key: values[-1] for key, values in parse_qs(url.query).items()},
            headers={key.lower(): value for key, value in handler.headers.items()},
            body=body,
        )
        with self._lock:
            self.requests.append(request)
        for (method, prefix), hold in list(self.holds.items()):
            if request.method == method and request.path.startswith(prefix):
                hold.arrived.set()
                hold.release.wait(timeout=30)
        status, payload = self._answer(request)
        headers = {}
        if status == 429 or status >= 500:
            headers["retry-after-ms"] = self.retry_after_ms
        if isinstance(payload, SseBody):
            encoded, content_type = payload.encode(), "text/event-stream"
        else:
            encoded, content_type = json.dumps(payload).encode(), "application/json"
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(encoded)))
        handler.send_header("x-request-id", f"req_fake_{len(self.requests)}")
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(encoded)

    def _answer(self, request: RecordedRequest) -> tuple[int, Any]:
        with self._lock:
            for (method, prefix), failure in self.failures.items():
                if request.method == method and request.path.startswith(prefix) and failure.applies():
                    return failure.status, failure.body
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return 401, _error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        if request.method == "POST" and request.path == "/v1/responses":
            return self._create_response(request.body or {})
        if request.headers.get("openai-beta") != "chatkit_beta=v1":
            return 400, _error("ChatKit endpoints need the chatkit_beta header.", "invalid_request_error")

        parts = request.path.removeprefix("/v1/").split("/")
        if request.method == "POST" and parts == ["chatkit", "sessions"]:
            return self._create_session(request.body or {})
        if request.method == "GET" and parts == ["chatkit", "threads"]:
            threads = sorted(self.threads.values(), key=lambda thread: (thread.created_at, thread.id))
            if "user" in request.query:
                threads = [thread for thread in threads if thread.user == request.query["user"]]
            return _page([self._thread_resource(thread) for thread in threads], request.query)
        if request.method == "GET" and len(parts) == 3 and parts[:2] == ["chatkit", "threads"]:
            thread = self.threads.get(parts[2])
            return (200, self._thread_resource(thread)) if thread else _not_found(parts[2])
        if (
            request.method == "GET"
            and len(parts) == 4
            and parts[:2] == ["chatkit", "threads"]
            and parts[3] == "items"
        ):
            thread = self.threads.get(parts[2])
            return self._list_items(thread, request.query) if thread else _not_found(parts[2])
        return 404, _error(f"Unknown path {request.path}", "invalid_request_error")

    def _create_session(self, body: dict[str, Any]) -> tuple[int, Any]:
        workflow = body.get("workflow") or {}
        if not body.get("user") or not workflow.get("id"):
            return 400, _error("user and workflow.id are required.", "invalid_request_error")
        now = int(time.time())
        expires_after = (body.get("expires_after") or {}).get("seconds", 600)
        per_minute = (body.get("rate_limits") or {}).get("max_requests_per_1_minute", 10)
        number = next(self._ids)
        return 200, {
            "id": f"cksess_{number:06d}",
            "object": "chatkit.session",
            "client_secret": f"ek_test_secret_{number:06d}",
            "expires_at": now + expires_after,
            "workflow": {
                "id": workflow["id"],
                "version": workflow.get("version"),
                "state_variables": workflow.get("state_variables") or {},
                "tracing": {"enabled": True},
            },
            "user": body["user"],
            "rate_limits": {"max_requests_per_1_minute": per_minute},
            "max_requests_per_1_minute": per_minute,
            "status": "active",
            "chatkit_configuration": {
                "automatic_thread_titling": {"enabled": True},
                "file_upload": {"enabled": False, "max_file_size": 512, "max_files": 10},
                "history": {"enabled": True, "recent_threads": None},
            },
        }

    def _create_response(self, body: dict[str, Any]) -> tuple[int, Any]:
        """The next scripted turn (`model_turns`), else "Echo: " and the last user text,
        streamed as the Responses API streams: text word by word, a function call whole."""
        if not body.get("stream"):
            return 400, _error("This fake only streams responses.", "invalid_request_error")
        turn = self.model_turns.popleft() if self.model_turns else None
        if turn is None or isinstance(turn, str):
            output, streamed = _text_output(turn if turn is not None else "Echo: " + _last_user_text(body))
        else:
            output, streamed = _function_call_output(*turn)
        number = next(self._ids)
        response: dict[str, Any] = {
            "id": f"resp_fake_{number:06d}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "model": body.get("model"),
            "output": [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": response},
            *streamed,
            {"type": "response.output_item.done", "output_index": 0, "item": output},
            {
                "type": "response.completed",
                "response": {
                    **response,
                    "status": "completed",
                    "output": [output],
                    "usage": {
                        "input_tokens": 12,
                        "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens": 3,
                        "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": 15,
                    },
                },
            },
        ]
        return 200, SseBody([{**event, "sequence_number": index} for index, event in enumerate(events)])

    @staticmethod
    def _thread_resource(thread: FakeThread) -> dict[str, Any]:
        return {
            "id": thread.id,
            "object": "chatkit.thread",
            "created_at": thread.created_at,
            "title": thread.title,
            "status": {"type": "active"},
            "user": thread.user,
        }

    @staticmethod
    def _list_items(thread: FakeThread, query: dict[str, str]) -> tuple[int, Any]:
        return _page(thread.items, query)


@dataclass
class SseBody:
    """Events sent as server-sent events, the way OpenAI streams a response."""

    events: list[dict[str, Any]]

    def encode(self) -> bytes:
        return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in self.events).encode()


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _last_user_text(body: dict[str, Any]) -> str:
    user_texts = [
        part.get("text", "") if isinstance(part, dict) else ""
        for item in body.get("input") or []
        if isinstance(item, dict) and item.get("role") == "user"
        for part in (item["content"] if isinstance(item["content"], list) else [{"text": item["content"]}])
    ]
    return user_texts[-1] if user_texts else ""


def _text_output(text: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An assistant message, and the events that stream it word by word."""
    message_id = f"msg_fake_{uuid.uuid4().hex[:12]}"
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    message = {
        "type": "message",
        "id": message_id,
        "role": "assistant",
        "status": "completed",
        "content": [part],
    }
    at = {"item_id": message_id, "output_index": 0, "content_index": 0}
    first, *rest = text.split(" ")
    return message, [
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**message, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
        *(
            {"type": "response.output_text.delta", **at, "delta": delta, "logprobs": []}
            for delta in [first, *(f" {word}" for word in rest)]
        ),
        {"type": "response.output_text.done", **at, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **at, "part": part},
    ]


def _function_call_output(
    name: str, arguments: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A call of one of the request's tools (a handoff is one too), and the events that stream it."""
    call = {
        "type": "function_call",
        "id": f"fc_fake_{uuid.uuid4().hex[:12]}",
        "call_id": f"call_fake_{uuid.uuid4().hex[:12]}",
        "name": name,
        "arguments": json.dumps(arguments),
        "status": "completed",
    }
    at = {"item_id": call["id"], "output_index": 0}
    return call, [
        {"type": "response.output_item.added", "output_index": 0, "item": {**call, "arguments": ""}},
        {"type": "response.function_call_arguments.delta", **at, "delta": call["arguments"]},
        {"type": "response.function_call_arguments.done", **at, "arguments": call["arguments"]},
    ]


def _page(objects: list[dict[str, Any]], query: dict[str, str]) -> tuple[int, Any]:
    """One page of a list, oldest first unless `order` says `desc`, around the `after`/`before` ids."""
    limit = int(query.get("limit", 20))
    if not 0 <= limit <= 100:
        return 400, _error("limit must be between 0 and 100.", "invalid_request_error")
    listed = objects if query.get("order", "desc") == "asc" else list(reversed(objects))
    ids = [entry["id"] for entry in listed]
    for cursor in ("after", "before"):
        if cursor in query and query[cursor] not in ids:
            return 400, _error(f"Unknown {cursor} cursor.", "invalid_request_error")
    start = ids.index(query["after"]) + 1 if "after" in query else 0
    end = ids.index(query["before"]) if "before" in query else len(listed)
    listed = listed[start:end]
    page = listed[:limit]
    return 200, {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": len(listed) > limit,
    }


def _not_found(thread_id: str) -> tuple[int, Any]:
    return 404, _error(f"Thread with id '{thread_id}' not found.", "invalid_request_error")


# --- item builders, shaped like the spec's ThreadItem variants ---------------------


def user_message(
    text: str, *, quoted: str | None = None, attachments: list[str] | None = None
) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "input_text", "text": text}]
    if quoted:
        content.insert(0, {"type": "quoted_text", "text": quoted})
    return {
        "type": "chatkit.user_message",
        "content": content,
        "attachments": [
            {
                "type": "file",
                "id": f"cfile_{index}",
                "name": name,
                "mime_type": "application/pdf",
                "preview_url": None,
            }
            for index, name in enumerate(attachments or [])
        ],
        "inference_options": None,
    }


def assistant_message(text: str, *, urls: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "chatkit.assistant_message",
        "content": [
            {
                "type": "output_text",
                "text": text,
                "annotations": [{"type": "url", "source": {"type": "url", "url": url}} for url in urls or []],
            }
        ],
    }


def widget(payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "chatkit.widget", "widget": json.dumps(payload)}


def client_tool_call(name: str, arguments: dict[str, Any], output: Any = None) -> dict[str, Any]:
    return {
        "type": "chatkit.client_tool_call",
        "status": "completed" if output is not None else "in_progress",
        "call_id": f"call_{name}",
        "name": name,
        "arguments": json.dumps(arguments),
        "output": json.dumps(output) if output is not None else None,
    }


def task(heading: str, summary: str | None = None, task_type: str = "custom") -> dict[str, Any]:
    return {"type": "chatkit.task", "task_type": task_type, "heading": heading, "summary": summary}


def task_group(*tasks: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "chatkit.task_group",
        "tasks": [{"type": "thought", "heading": heading, "summary": summary} for heading, summary in tasks],
    }
