"""Streaming answers at scale: this service's production server against a reference.

Both servers stream from the same fake Responses API (tests/fake_responses.py: first delta
300 ms after the request, then 40 deltas 20 ms apart) and are loaded alike: V visitors at once,
each asking its questions one after another, five to a thread (`threads.create`, then
`threads.add_user_message`). This service runs as deployed (`scripts/serve`: uvicorn with
the settings of a production environment, its database PostgreSQL when reachable); the
reference is a minimal FastAPI + uvicorn ChatKit server with threads in memory
(bench/reference_server.py). The two take turns at each V, in one run.

Figures: TTFT overhead (time from sending the question to the first word, less the fake's
300 ms), the time before the model is called (from sending to the fake's receiving), answers
per second, CPU seconds per answer and peak RSS of the server process, and the first answer
of a freshly started server. Errors (a status other than 200, an `error` event, a wrong or
missing answer) and, for this service, a thread item missing from the database are failures.
"""

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx2

from tests.fake_responses import ANSWER
from tests.loopback import free_port

REPO = Path(__file__).resolve().parent.parent
FIRST_DELTA_MS = 300
ORIGIN = "https://shop.example"
# (visitors at once, questions each): enough answers for a p99 at the larger V.
LEVELS = ((1, 20), (8, 10), (32, 6), (64, 5))
QUICK_LEVELS = ((1, 3), (8, 2))
READY_SECONDS = 60
# A visitor starts a new thread after this many questions: the two servers read histories of
# different lengths (100 items here, 20 there), and short threads keep them the same.
QUESTIONS_PER_THREAD = 5


def _descendants(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:
            # A thread that ended in between.
            continue
        for child in children:
            found.extend(_descendants(int(child)))
    return found


@dataclass
class Server:
    """One server under test, in a process of its own (with its workers, if any)."""

    name: str
    command: list[str]
    env: dict[str, str]
    chatkit_path: str
    ready_path: str
    log: IO[str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    started_in: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        started = time.monotonic()
        self.process = subprocess.Popen(
            [*self.command, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=REPO,
            env={**self.env, "PYTHONPATH": str(REPO)},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = started + READY_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                # Any reply will do: it answers.
                httpx2.get(self.url + self.ready_path, headers=FORWARDED, timeout=2)
                break
            except httpx2.TransportError:
                time.sleep(0.02)
        else:
            raise SystemExit(f"{self.name} did not answer within {READY_SECONDS} s:\n{self.log_tail()}")
        self.started_in = time.monotonic() - started

    def log_tail(self) -> str:
        """The end of the server's output (the log goes with the benchmark's directory)."""
        self.log.flush()
        return "\n".join(Path(self.log.name).read_text().splitlines()[-30:])

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def cpu_seconds(self) -> float:
        assert self.process is not None
        ticks = 0
        for pid in _descendants(self.process.pid):
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        total = 0
        for pid in _descendants(self.process.pid):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        return total / 1024


# This service sits behind a proxy that ends TLS, as in production.
FORWARDED = {"X-Forwarded-Proto": "https"}


@dataclass
class Answer:
    marker: str
    sent: float
    first_word: float | None = None
    ended: float | None = None
    error: str | None = None


def _question(marker: str, thread_id: str | None) -> bytes:
    user_input = {
        "content": [{"type": "input_text", "text": f"A question ({marker})"}],
        "attachments": [],
        "inference_options": {},
    }
    if thread_id is None:
        return json.dumps({"type": "threads.create", "params": {"input": user_input}}).encode()
    return json.dumps(
        {"type": "threads.add_user_message", "params": {"thread_id": thread_id, "input": user_input}}
    ).encode()


async def _ask(client: httpx2.AsyncClient, server: Server, answer: Answer, body: bytes, cookie: str) -> dict:
    """One question; fills in `answer`, returns what the visitor keeps (thread, cookie)."""
    kept: dict[str, str] = {}
    headers = {**FORWARDED, "Content-Type": "application/json", "Origin": ORIGIN}
    if cookie:
        headers["Cookie"] = cookie
    url = server.url + server.chatkit_path
    async with client.stream("POST", url, content=body, headers=headers) as reply:
        if reply.status_code != 200:
            answer.error = f"status {reply.status_code}: {(await reply.aread())[:200]!r}"
            return kept
        if "set-cookie" in reply.headers:
            kept["cookie"] = reply.headers["set-cookie"].partition(";")[0]
        text = None
        async for line in reply.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line.removeprefix("data: "))
            kind = event["type"]
            if kind == "thread.item.updated" and answer.first_word is None:
                if event["update"]["type"] == "assistant_message.content_part.text_delta":
                    answer.first_word = time.monotonic()
            elif kind == "thread.created":
                kept["thread_id"] = event["thread"]["id"]
            elif kind == "thread.item.done" and event["item"]["type"] == "assistant_message":
                text = "".join(part["text"] for part in event["item"]["content"])
            elif kind == "error":
                answer.error = f"error event: {event}"
    answer.ended = time.monotonic()
    if answer.error is None and text != ANSWER:
        answer.error = f"the answer read {text!r}"
    return kept


async def _visitor(server: Server, questions: int, tag: str) -> list[Answer]:
    answers = []
    thread_id = None
    cookie = ""
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(120.0)) as client:
        for number in range(questions):
            answer = Answer(marker=f"bench-question-{tag}-{number}", sent=time.monotonic())
            answers.append(answer)
            try:
                kept = await _ask(client, server, answer, _question(answer.marker, thread_id), cookie)
            except httpx2.HTTPError as exc:
                answer.error = f"{exc.__class__.__name__}: {exc}"
                kept = {}
            thread_id = kept.get("thread_id", thread_id)
            cookie = kept.get("cookie", cookie)
            if (number + 1) % QUESTIONS_PER_THREAD == 0:
                thread_id = None
    return answers


def _load(server: Server, visitors: int, questions: int) -> tuple[list[Answer], float]:
    async def everyone() -> list[list[Answer]]:
        run = uuid.uuid4().hex[:8]
        return await asyncio.gather(
            *(_visitor(server, questions, f"{run}-{visitor}") for visitor in range(visitors))
        )

    started = time.monotonic()
    results = asyncio.run(everyone())
    return [answer for answers in results for answer in answers], time.monotonic() - started


def _percentile(samples: list[float], percent: int) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(percent / 100 * (len(ordered) - 1)))]


def _arrivals(fake_url: str) -> dict[str, float]:
    return httpx2.get(fake_url + "/arrivals", timeout=10).json()


def _level(server: Server, visitors: int, questions: int, fake_url: str) -> dict:
    cpu_before = server.cpu_seconds()
    answers, wall = _load(server, visitors, questions)
    cpu = server.cpu_seconds() - cpu_before
    arrivals = _arrivals(fake_url)
    good = [answer for answer in answers if answer.error is None and answer.first_word is not None]
    ttft = [(answer.first_word - answer.sent) * 1000 - FIRST_DELTA_MS for answer in good]  # type: ignore[operator]
    before_model = [(arrivals[a.marker] - a.sent) * 1000 for a in good if a.marker in arrivals]
    return {
        "answers": len(good),
        "errors": [answer.error for answer in answers if answer.error is not None],
        "ttft_p50_ms": _percentile(ttft, 50) if ttft else float("nan"),
        "ttft_p99_ms": _percentile(ttft, 99) if ttft else float("nan"),
        "before_model_ms": statistics.median(before_model) if before_model else float("nan"),
        "answers_per_s": len(good) / wall,
        "cpu_ms_per_answer": cpu * 1000 / max(len(good), 1),
    }


def _first_answer(server: Server) -> float:
    """TTFT of a fresh server's first answer, in seconds from sending it."""
    answers, _ = _load(server, 1, 1)
    [answer] = answers
    if answer.error is not None or answer.first_word is None:
        raise SystemExit(f"{server.name}'s first answer failed: {answer.error}")
    return answer.first_word - answer.sent


def _database_ready(database_url: str, env: dict[str, str]) -> None:
    """An empty database with the service's tables."""
    if database_url.startswith("postgres"):
        import psycopg

        server, _, name = database_url.rpartition("/")
        with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            connection.execute(f'CREATE DATABASE "{name}"')
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"]
    subprocess.run(migrate, cwd=REPO, env=env, check=True)


def _stored_answers(env: dict[str, str]) -> tuple[int, int]:
    """(questions, full answers) stored in this service's database."""
    script = (
        "import django, json; django.setup()\n"
        "from chatkit_api.models import ChatKitThreadItem as Item\n"
        "questions = Item.objects.filter(type='user_message').count()\n"
        "answers = [''.join(p['text'] for p in d['content']) for d in "
        "Item.objects.filter(type='assistant_message').values_list('data', flat=True)]\n"
        f"print(json.dumps([questions, sum(a == {ANSWER!r} for a in answers)]))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, check=True, capture_output=True, text=True
    ).stdout
    questions, answers = json.loads(output.strip().splitlines()[-1])
    return questions, answers


def measure_streaming(quick: bool, database_url: str, workdir: Path) -> dict:
    fake_port = free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    base_env = {
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", str(workdir)),
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": f"{fake_url}/v1",
        "CHATKIT_AGENT_MODEL": "gpt-4.1-mini",
    }
    service_env = {
        **base_env,
        "DJANGO_SETTINGS_MODULE": "chatkit_site.settings",
        "DJANGO_SECRET_KEY": "bench-" + "s" * 50,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": database_url,
        "CHATKIT_MODE": "self_hosted",
        "CORS_ALLOWED_ORIGINS": ORIGIN,
        # Every visitor of the benchmark comes from one address.
        "RATE_LIMIT_CHATKIT_REQUESTS_PER_IP": "off",
    }
    reference_env = {**base_env, "OPENAI_AGENTS_DISABLE_TRACING": "1"}
    _database_ready(database_url, service_env)
    results: dict[str, Any] = {"database": database_url, "levels": [], "servers": {}}
    with ExitStack() as running:
        logs = {
            name: running.enter_context(open(workdir / f"{name}.log", "w"))
            for name in ("fake", "service", "reference")
        }
        fake_app = ["--factory", "tests.fake_responses:paced_app", "--port", str(fake_port)]
        fake = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *fake_app, "--log-level", "warning", "--no-access-log"],
            cwd=REPO,
            env={**base_env, "PYTHONPATH": str(REPO)},
            stdout=logs["fake"],
            stderr=subprocess.STDOUT,
        )
        running.callback(fake.wait, timeout=30)
        running.callback(fake.terminate)
        service = Server(
            "this service",
            [str(REPO / "scripts" / "serve")],
            service_env,
            chatkit_path="/api/chatkit",
            ready_path="/api/chatkit",
            log=logs["service"],
        )
        reference = Server(
            "reference",
            [sys.executable, "-m", "uvicorn", "bench.reference_server:app"],
            reference_env,
            chatkit_path="/chatkit",
            ready_path="/health",
            log=logs["reference"],
        )
        servers = (service, reference)
        for server in servers:
            running.callback(server.stop)
            server.start()
            results["servers"][server.name] = {
                "started_s": server.started_in,
                "first_answer_s": _first_answer(server),
            }
        for visitors, questions in QUICK_LEVELS if quick else LEVELS:
            print(f"   {visitors} visitors at once...", flush=True)
            level = {server.name: _level(server, visitors, questions, fake_url) for server in servers}
            results["levels"].append({"visitors": visitors, **level})
        for server in servers:
            results["servers"][server.name]["peak_rss_mb"] = server.peak_rss_mb()
    results["answered"] = 1 + sum(level[service.name]["answers"] for level in results["levels"])
    results["stored"] = _stored_answers(service_env)
    return results


def streaming_failures(results: dict) -> list[str]:
    failures = []
    for level in results["levels"]:
        for name in ("this service", "reference"):
            errors = level[name]["errors"]
            if errors:
                failures.append(f"{name} at V={level['visitors']}: {len(errors)} errors, first {errors[0]}")
    questions, answers = results["stored"]
    if (questions, answers) != (results["answered"], results["answered"]):
        failures.append(
            f"{results['answered']} answers streamed, but the database holds {questions} questions "
            f"and {answers} full answers"
        )
    return failures


def report_streaming(results: dict) -> None:
    def verdict(met: bool) -> str:
        return "met" if met else "MISSED"

    ours, theirs = results["servers"]["this service"], results["servers"]["reference"]
    print(
        "\n6. Streaming answers: this service (scripts/serve) vs a minimal FastAPI ChatKit server"
        f"\n   model: first delta after {FIRST_DELTA_MS} ms, then 40 deltas 20 ms apart; "
        f"this service's database: {results['database'].rpartition('@')[2]}"
    )
    print(
        f"   {'V':>3} | {'TTFT overhead p50 / p99 ms':>27} | {'reference':>15} | {'answers/s':>9} | "
        f"{'reference':>9} | {'before model ms':>15} | {'reference':>9} | {'CPU ms/answer':>13} | reference"
    )
    targets_met = True
    for level in results["levels"]:
        a, b = level["this service"], level["reference"]
        ours_ttft = f"{a['ttft_p50_ms']:,.0f} / {a['ttft_p99_ms']:,.0f}"
        their_ttft = f"{b['ttft_p50_ms']:,.0f} / {b['ttft_p99_ms']:,.0f}"
        print(
            f"   {level['visitors']:>3} | {ours_ttft:>27} | {their_ttft:>15} | {a['answers_per_s']:>9.1f} | "
            f"{b['answers_per_s']:>9.1f} | {a['before_model_ms']:>15.0f} | {b['before_model_ms']:>9.0f} | "
            f"{a['cpu_ms_per_answer']:>13.0f} | {b['cpu_ms_per_answer']:.0f}"
        )
        targets_met &= a["ttft_p50_ms"] <= b["ttft_p50_ms"] and a["ttft_p99_ms"] <= b["ttft_p99_ms"]
    print(f"   TTFT overhead p50 and p99 no worse than the reference's at every V: {verdict(targets_met)}")
    top = results["levels"][-1]
    print(
        f"   answers/s at V={top['visitors']}: {top['this service']['answers_per_s']:.1f} vs "
        f"{top['reference']['answers_per_s']:.1f}: "
        f"{verdict(top['this service']['answers_per_s'] >= top['reference']['answers_per_s'])}"
    )
    questions, answers = results["stored"]
    print(
        f"   stored: {questions} questions and {answers} full answers "
        f"for {results['answered']} answers streamed"
    )
    rss_ratio = ours["peak_rss_mb"] / theirs["peak_rss_mb"]
    print(
        f"   peak RSS {ours['peak_rss_mb']:.0f} MB vs {theirs['peak_rss_mb']:.0f} MB ({rss_ratio:.2f} x)   "
        f"target <= 1.5 x: {verdict(rss_ratio <= 1.5)}"
    )
    first_ratio = ours["first_answer_s"] / theirs["first_answer_s"]
    print(
        f"   a fresh server's first answer, to its first word: {ours['first_answer_s']:.2f} s vs "
        f"{theirs['first_answer_s']:.2f} s ({first_ratio:.2f} x)   "
        f"target <= 1.5 x: {verdict(first_ratio <= 1.5)}"
    )
    print(f"   start to ready: {ours['started_s']:.2f} s vs {theirs['started_s']:.2f} s")
