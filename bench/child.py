"""One measurement, run in a fresh process by bench/run.py: `python bench/child.py <mode>`.

It runs inside the built Lambda package (the working directory, first on sys.path) with
the Lambda Python version, configured from the environment the orchestrator passes (the
fake ChatKit API and the moto server it started), and drives
`chatkit_site.lambda_handler.handler` with real event shapes. The last stdout line is JSON.
"""

import json
import os
import statistics
import sys
import time
import uuid

MODE = sys.argv[1]
# The task root, as on Lambda: the package's own modules and dependencies only.
sys.path.insert(0, os.getcwd())


def emit(result: dict) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def events(thread_id: str | None = None):
    """A session event, and a function that builds a new transcript event each call.

    Each transcript request differs (a fresh `details`): an identical one within minutes is
    a retry, which the service answers from its record without mailing again.
    """
    import importlib.util

    # The event builders live with the tests, outside the package: loaded by file path so
    # that nothing else of the repository becomes importable.
    spec = importlib.util.spec_from_file_location("lambda_events", os.environ["BENCH_EVENTS_FILE"])
    assert spec is not None and spec.loader is not None
    lambda_events = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lambda_events)
    http_api_v2_event = lambda_events.http_api_v2_event

    token = os.environ["TRANSCRIPT_API_TOKEN"]
    session = http_api_v2_event(body={"locale": "en", "pageUrl": "https://shop.example/quote"})

    def transcript() -> dict:
        return http_api_v2_event(
            path="/api/chatkit/transcript",
            body={
                "threadId": thread_id or os.environ["BENCH_THREAD_ID"],
                "name": "Bench",
                "email": "bench@visitor.example",
                "details": f"bench request {uuid.uuid4()}",
            },
            headers={"authorization": f"Bearer {token}"},
        )

    return session, transcript


def reply_ok(response: dict, path: str) -> None:
    if response["statusCode"] != 200:
        raise SystemExit(f"{path} answered {response['statusCode']}: {response['body']}")


def cold(kind: str) -> None:
    """From interpreter start to the first reply; the orchestrator times the process."""
    from chatkit_site.lambda_handler import handler

    session, transcript = events()
    event = session if kind == "session" else transcript()
    reply_ok(handler(event, None), kind)
    not_for_sessions = os.environ["BENCH_NOT_FOR_SESSIONS"].split(",")
    emit({f"{name}_imported": name in sys.modules for name in not_for_sessions})


def floor(kind: str) -> None:
    """Only Django set up with the project's settings, and the SDKs a call needs."""
    import django

    django.setup()
    import openai  # noqa: F401

    if kind == "transcript":
        import boto3  # noqa: F401
    emit({})


def timed(call, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def summary(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "median_ms": statistics.median(ordered),
        "p10_ms": ordered[len(ordered) // 10],
        "p90_ms": ordered[(len(ordered) * 9) // 10],
        "runs": len(ordered),
    }


def warm() -> None:
    import openai

    from chatkit_site.lambda_handler import handler

    runs = int(os.environ.get("BENCH_RUNS", "300"))
    session, transcript = events()
    client = openai.OpenAI(
        api_key=os.environ["OPENAI_API_KEY"], base_url=os.environ["OPENAI_BASE_URL"], max_retries=0
    )
    workflow = {"id": os.environ["CHATKIT_WORKFLOW_ID"], "state_variables": {"locale": "en", "page_url": ""}}

    def bare_sdk_call():
        client.beta.chatkit.sessions.create(user="visitor_bench", workflow=workflow)

    def session_call():
        reply_ok(handler(session, None), "session")

    transcript_runs = max(runs // 25, 4)
    # Built beforehand, so that the timed calls do only the service's work.
    transcript_events = iter([transcript() for _ in range(30 + 5 * transcript_runs)])

    def transcript_call():
        reply_ok(handler(next(transcript_events), None), "transcript")

    for call in (bare_sdk_call, session_call, transcript_call):
        timed(call, 30)
    # Interleaved rounds, so that a slow moment of the machine hits every series alike.
    bare, sessions, transcripts = [], [], []
    for _ in range(5):
        bare += timed(bare_sdk_call, runs // 5)
        sessions += timed(session_call, runs // 5)
        transcripts += timed(transcript_call, transcript_runs)
    emit({"bare_sdk": summary(bare), "session": summary(sessions), "transcript": summary(transcripts)})


def big_thread() -> None:
    """Mail a long thread through the handler; then time the rendering alone.

    A short transcript goes first, so that what every first mail loads (boto3, the SES
    client) is not counted as growth. The long one is then timed and its resident memory
    growth read; a second runs under tracemalloc (which slows everything down) for the
    peak of Python allocations.
    """
    import tracemalloc

    from chatkit_site.lambda_handler import handler

    reply_ok(handler(events(os.environ["BENCH_WARMUP_THREAD_ID"])[1](), None), "transcript")
    _, transcript = events()
    resident_before = peak_rss_mb()
    started = time.perf_counter()
    reply_ok(handler(transcript(), None), "transcript")
    wall = time.perf_counter() - started
    resident_growth = peak_rss_mb() - resident_before

    tracemalloc.start()
    reply_ok(handler(transcript(), None), "transcript")
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    from chatkit_api import openai_gateway
    from chatkit_api.models import Transcript
    from chatkit_api.rendering import Lead, transcript_render

    record = Transcript.objects.latest("id")
    items = list(openai_gateway.thread_items(os.environ["BENCH_THREAD_ID"]))
    started = time.perf_counter()
    transcript_render(lead=Lead(name="Bench"), items=items)
    render = time.perf_counter() - started
    emit(
        {
            "wall_s": wall,
            "render_s": render,
            "items": record.item_count,
            "resident_growth_mb": resident_growth,
            "traced_peak_mb": traced_peak / 2**20,
            "transcript_mb": (len(record.body_text.encode()) + len(record.body_html.encode())) / 2**20,
        }
    )


def peak_rss_mb() -> float:
    # VmHWM, not getrusage: ru_maxrss survives exec, so a process started by a large
    # parent would report the parent's peak.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def peak_rss() -> None:
    from chatkit_site.lambda_handler import handler

    session, transcript = events()
    for _ in range(20):
        reply_ok(handler(session, None), "session")
        reply_ok(handler(transcript(), None), "transcript")
    emit({"peak_rss_mb": peak_rss_mb()})


def import_threads() -> None:
    """`import_managed_threads --user <BENCH_IMPORT_USER>` through the handler's manage event,
    as on Lambda; how long it took and how much the resident memory grew."""
    from chatkit_site.lambda_handler import handler

    # What loading the command costs (Django, the models, the ChatKit SDK's types) is not
    # counted as the import's growth.
    handler({"manage": ["check"]}, None)
    import chatkit_api.managed_import  # noqa: F401

    resident_before = peak_rss_mb()
    started = time.perf_counter()
    result = handler({"manage": ["import_managed_threads", "--user", os.environ["BENCH_IMPORT_USER"]]}, None)
    wall = time.perf_counter() - started
    if result["exit_code"] != 0:
        raise SystemExit(f"import_managed_threads failed: {result['errors']}")
    emit({"wall_s": wall, "resident_growth_mb": peak_rss_mb() - resident_before, "output": result["output"]})


if __name__ == "__main__":
    if MODE.startswith("cold-"):
        cold(MODE.removeprefix("cold-"))
    elif MODE.startswith("floor-"):
        floor(MODE.removeprefix("floor-"))
    elif MODE == "warm":
        warm()
    elif MODE == "big-thread":
        big_thread()
    elif MODE == "peak-rss":
        peak_rss()
    elif MODE == "import-threads":
        import_threads()
    else:
        raise SystemExit(f"unknown mode {MODE}")
