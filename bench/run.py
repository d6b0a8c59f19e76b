"""Benchmark: cold start, warm latency, a 10,000-message thread, peak memory, the import of
managed threads, and streaming answers under load next to a reference ChatKit server.

    python bench/run.py          # `make bench`
    python bench/run.py --quick  # fewer runs; what CI runs so that the script cannot rot

Starts the fake ChatKit API the tests use and a moto server for SES, then measures the
built Lambda package (build/lambda-x86_64, from `make lambda-zip`) with the Lambda Python version,
through `chatkit_site.lambda_handler.handler` with real event shapes, each measurement in
fresh processes, and prints medians with their spread next to the floor they
are compared with. The old Node.js handler is measured against the same fake when Node.js
and its source (../shared/reference/old-node-handler.md) are available. Streaming is
measured on the production server instead (bench/streaming.py).

Timings are printed, never asserted: a busy machine makes them noisy. Exits non-zero only
when something is functionally wrong (a failed call, the wrong number of upstream requests,
boto3, django_ses or drf_spectacular loaded for a session call, an import that does not take
exactly 100 item requests for 10,000 items, a streamed answer that failed or was not stored).
"""

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The built Lambda package (`make lambda-zip`): what is measured is what is deployed. The
# x86_64 build: these machines cannot run the arm64 one.
PACKAGE = REPO / "build" / "lambda-x86_64"
sys.path.insert(0, str(REPO))

from bench.streaming import measure_streaming, report_streaming, streaming_failures  # noqa: E402
from scripts.lambda_python import lambda_python_command  # noqa: E402
from tests.fake_chatkit import (  # noqa: E402
    API_KEY,
    FakeChatKit,
    assistant_message,
    client_tool_call,
    task_group,
    user_message,
    widget,
)
from tests.loopback import free_port  # noqa: E402

SENDER = "chat@shop.example"
TOKEN = "bench-transcript-token-0123456789"
BIG_THREAD_SIZE = 10_000
PAGE_SIZE = 100
# Packages a session call has no use for (bench/child.py reports whether they were loaded).
NOT_FOR_SESSIONS = ("boto3", "django_ses", "drf_spectacular", "whitenoise")


def conversation(count: int) -> list[dict]:
    return [
        user_message(f"question {n}") if n % 2 == 0 else assistant_message(f"answer {n}")
        for n in range(count)
    ]


def managed_conversation(count: int) -> list[dict]:
    """A managed thread with a widget, a tool call and a task group every tenth item."""
    extras = [
        lambda n: widget({"type": "Card", "children": [{"type": "Text", "value": f"Quote {n}"}]}),
        lambda n: client_tool_call("open_booking_form", {"service": f"brakes {n}"}, output={"ok": True}),
        lambda n: task_group(("Checked parts", f"{n} in stock")),
    ]
    items = conversation(count)
    for n in range(9, count, 10):
        items[n] = extras[(n // 10) % len(extras)](n)
    return items


class Bench:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.failures: list[str] = []
        self.fake = FakeChatKit()
        self.python = lambda_python_command()
        self.workdir = Path(tempfile.mkdtemp(prefix="chatkit-bench-"))
        self.database = "SQLite"

    # --- set-up -----------------------------------------------------------------------

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        self.fake.start()
        self.small = self.fake.add_thread(user="visitor_bench", items=conversation(10))
        self.big = self.fake.add_thread(user="visitor_bench", items=conversation(BIG_THREAD_SIZE))

        port = free_port()
        # The moto server logs every request it answers.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.moto.start()
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", str(self.workdir)),
            "DJANGO_SETTINGS_MODULE": "chatkit_site.settings",
            "DJANGO_SECRET_KEY": "bench-" + "s" * 50,
            "AWS_LAMBDA_FUNCTION_NAME": "chatkit-bench",
            "DATABASE_URL": self.database_url(),
            "OPENAI_API_KEY": API_KEY,
            "OPENAI_BASE_URL": self.fake.base_url,
            "OPENAI_MAX_RETRIES": "0",
            "CHATKIT_WORKFLOW_ID": "wf_bench",
            "TRANSCRIPT_API_TOKEN": TOKEN,
            "SES_FROM_EMAIL": SENDER,
            "SES_TO_EMAIL": "leads@shop.example",
            "SES_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL_SES": f"http://127.0.0.1:{port}",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "BENCH_EVENTS_FILE": str(REPO / "tests" / "lambda_events.py"),
            "BENCH_NOT_FOR_SESSIONS": ",".join(NOT_FOR_SESSIONS),
            # Counted as in production, but never reached: the bench sends more than a
            # visitor would.
            "RATE_LIMIT_SESSIONS_PER_IP": "1000000/hour",
            "RATE_LIMIT_TRANSCRIPTS_PER_THREAD": "1000000/hour",
        }
        import boto3

        boto3.client(
            "ses",
            region_name="eu-west-1",
            endpoint_url=self.env["AWS_ENDPOINT_URL_SES"],
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        ).verify_email_identity(EmailAddress=SENDER)
        for command in (["migrate", "--noinput"], ["flush", "--noinput"]):
            subprocess.run(
                [*self.python, "-s", "manage.py", *command, "--verbosity", "0"],
                cwd=PACKAGE,
                env=self.env,
                check=True,
            )

    def database_url(self) -> str:
        """PostgreSQL, as in production, when a server is reachable; SQLite otherwise.

        With PostgreSQL configured, setting Django up loads psycopg: the floor and the
        service then pay for it alike, as they would on Lambda.
        """
        url = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chatkit_bench")
        try:
            import psycopg

            server, _, name = url.rpartition("/")
            with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=3) as connection:
                exists = connection.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                ).fetchone()
                if not exists:
                    connection.execute(f'CREATE DATABASE "{name}"')
        except Exception as exc:
            print(f"PostgreSQL is not reachable ({exc.__class__.__name__}): measuring with SQLite.")
            return f"sqlite:///{self.workdir / 'bench.sqlite3'}"
        self.database = url
        return url

    def streaming_database_url(self) -> str:
        """A database of its own for the streaming comparison, which empties it first."""
        if self.database == "SQLite":
            return f"sqlite:///{self.workdir / 'streaming.sqlite3'}"
        return self.database.rpartition("/")[0] + "/chatkit_bench_streaming"

    def stop(self) -> None:
        self.fake.stop()
        self.moto.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- running children -------------------------------------------------------------

    def child(self, mode: str, thread_id: str | None = None, **env: str) -> tuple[float, dict]:
        """Run bench/child.py; return (seconds from spawn to its result line, result)."""
        child_env = {**self.env, "BENCH_THREAD_ID": thread_id or self.small.id, **env}
        # The service logs a line per request, as on Lambda; it goes to a file, not a pipe
        # that could fill up.
        with tempfile.TemporaryFile(mode="w+") as log:
            started = time.perf_counter()
            process = subprocess.Popen(
                [*self.python, "-s", str(REPO / "bench" / "child.py"), mode],
                cwd=PACKAGE,
                env=child_env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
            assert process.stdout is not None
            line = process.stdout.readline()
            elapsed = time.perf_counter() - started
            process.communicate(timeout=600)
            if process.returncode != 0 or not line:
                log.seek(0)
                raise SystemExit(f"bench child {mode} failed:\n{log.read()[-5000:]}")
        return elapsed, json.loads(line)

    # --- measurements -----------------------------------------------------------------

    def cold_starts(self) -> dict:
        runs = 3 if self.quick else 10
        times: dict[str, list[float]] = {
            key: [] for key in ("cold-session", "floor-session", "cold-transcript", "floor-transcript")
        }
        imported_for_session = set()
        for _ in range(runs):
            for mode in times:
                elapsed, result = self.child(mode)
                times[mode].append(elapsed)
                if mode == "cold-session":
                    imported_for_session |= {name for name in NOT_FOR_SESSIONS if result[f"{name}_imported"]}
        if imported_for_session:
            self.failures.append(f"a session call imported {', '.join(sorted(imported_for_session))}")
        return {"times": times, "imported_for_session": sorted(imported_for_session)}

    def warm(self) -> dict:
        runs = "100" if self.quick else "1000"
        _, result = self.child("warm", BENCH_RUNS=runs)
        # The same calls with the session limit off: the service's own work, without the
        # round trip to the shared counters.
        _, uncounted = self.child("warm", BENCH_RUNS=runs, RATE_LIMIT_SESSIONS_PER_IP="off")
        result["session_uncounted"] = uncounted["session"]
        result["bare_sdk_uncounted"] = uncounted["bare_sdk"]
        return result

    def big_thread(self) -> dict:
        before = len(self.fake.requests_to("GET", f"/v1/chatkit/threads/{self.big.id}/items"))
        _, result = self.child("big-thread", self.big.id, BENCH_WARMUP_THREAD_ID=self.small.id)
        after = len(self.fake.requests_to("GET", f"/v1/chatkit/threads/{self.big.id}/items"))
        # The child reads the thread three times: twice through the handler, once more to
        # time the rendering alone.
        result["upstream_requests"] = (after - before) // 3
        expected = BIG_THREAD_SIZE // PAGE_SIZE
        if result["upstream_requests"] != expected:
            self.failures.append(
                f"{BIG_THREAD_SIZE} messages took {result['upstream_requests']} requests, not {expected}"
            )
        if result["items"] != BIG_THREAD_SIZE:
            self.failures.append(f"the transcript holds {result['items']} items, not {BIG_THREAD_SIZE}")
        return result

    def peak_rss(self) -> dict:
        return self.child("peak-rss")[1]

    def managed_import(self) -> dict:
        """Import threads of 1,000 and 10,000 items (the memory must not grow with the thread),
        the 10,000 again (nothing new), and many short ones."""
        threads = 50 if self.quick else 300
        self.fake.add_thread(user="import_1k", items=managed_conversation(1_000))
        big = self.fake.add_thread(user="import_10k", items=managed_conversation(BIG_THREAD_SIZE))
        for _ in range(threads):
            self.fake.add_thread(user="import_many", items=managed_conversation(20))
        big_items = f"/v1/chatkit/threads/{big.id}/items"
        results = {}
        for label, user in (
            ("1k", "import_1k"),
            ("10k", "import_10k"),
            ("10k_again", "import_10k"),
            ("many", "import_many"),
        ):
            before, items_before = len(self.fake.requests), len(self.fake.requests_to("GET", big_items))
            _, result = self.child("import-threads", BENCH_IMPORT_USER=user)
            result["requests"] = len(self.fake.requests) - before
            result["item_requests"] = len(self.fake.requests_to("GET", big_items)) - items_before
            results[label] = result
        for label, expected in (("10k", BIG_THREAD_SIZE // PAGE_SIZE), ("10k_again", 1)):
            if results[label]["item_requests"] != expected:
                self.failures.append(
                    f"importing {BIG_THREAD_SIZE} items ({label}) took {results[label]['item_requests']} "
                    f"item requests, not {expected}"
                )
        results["threads"] = threads
        return results

    def old_node_handler(self) -> dict | None:
        from bench.old_node import measure_old_node_handler

        return measure_old_node_handler(self.fake.base_url, runs=100 if self.quick else 1000)


def spread(samples: list[float], scale: float = 1.0) -> str:
    ordered = sorted(value * scale for value in samples)
    middle = statistics.median(ordered)
    return f"median {middle:8.3f}  (min {ordered[0]:.3f}, max {ordered[-1]:.3f}, n={len(ordered)})"


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def report_import(results: dict) -> None:
    print("\n5. Importing managed threads (import_managed_threads through the handler)")
    for label, items in (("1k", 1_000), ("10k", BIG_THREAD_SIZE)):
        result = results[label]
        print(
            f"   {items:>6,} items   {result['wall_s']:6.2f} s ({items / result['wall_s']:,.0f} items/s), "
            f"{result['requests']} requests, resident memory growth {result['resident_growth_mb']:.1f} MB"
        )
    ratio = results["10k"]["resident_growth_mb"] / max(results["1k"]["resident_growth_mb"], 0.1)
    print(f"   growth for 10x the items: {ratio:.1f} x   (bounded: the thread is never held whole)")
    print(f"   item requests for {BIG_THREAD_SIZE:,} items: {results['10k']['item_requests']}   target 100")
    again = results["10k_again"]
    print(
        f"   the same again, nothing new: {again['wall_s']:.2f} s, {again['requests']} requests "
        f"({again['item_requests']} for the thread's items)"
    )
    many = results["many"]
    print(
        f"   {results['threads']} threads of 20 items: {many['wall_s']:.2f} s "
        f"({results['threads'] / many['wall_s']:.0f} threads/s), {many['requests']} requests"
    )


def report(database: str, cold: dict, warm: dict, big: dict, rss: dict, node: dict | None) -> None:
    times = cold["times"]
    print(f"\nDatabase: {database.rpartition('@')[2]}")
    print("\n1. Cold start (new process to first reply, seconds)")
    for kind in ("session", "transcript"):
        ratio = statistics.median(times[f"cold-{kind}"]) / statistics.median(times[f"floor-{kind}"])
        print(f"   {kind:<10} {spread(times[f'cold-{kind}'])}")
        floor_what = "Django set up + import openai" + (" + boto3" if kind == "transcript" else "")
        print(f"   floor      {spread(times[f'floor-{kind}'])}  [{floor_what}]")
        print(f"   ratio      {ratio:.2f} x floor   target <= 1.20: {verdict(ratio <= 1.2)}")
    imported = ", ".join(cold["imported_for_session"]) or f"none of {', '.join(NOT_FOR_SESSIONS)}"
    print(f"   a session call loaded {imported}")

    print("\n2. Warm calls (milliseconds)")
    bare = warm["bare_sdk"]["median_ms"]
    for name in ("bare_sdk", "session", "transcript"):
        stats = warm[name]
        print(
            f"   {name:<10} median {stats['median_ms']:8.3f}  (p10 {stats['p10_ms']:.3f}, "
            f"p90 {stats['p90_ms']:.3f}, n={stats['runs']})  "
            f"{stats['median_ms'] / bare:.2f} x bare SDK call"
        )
    session = warm["session"]["median_ms"]
    uncounted, uncounted_bare = (
        warm["session_uncounted"]["median_ms"],
        warm["bare_sdk_uncounted"]["median_ms"],
    )
    print(
        f"   session without the rate-limit counter: median {uncounted:.3f} "
        f"(bare SDK call in that run {uncounted_bare:.3f})"
    )
    own_work = uncounted - uncounted_bare
    print(
        f"   the service's own work (Django, DRF, apig-wsgi, cookie, log): {own_work:.3f} ms   "
        f"target <= 0.25: {verdict(own_work <= 0.25)}"
    )
    print(
        f"   session ratio without the counter {uncounted / uncounted_bare:.2f} x bare SDK   "
        f"target <= 1.25: {verdict(uncounted / uncounted_bare <= 1.25)}"
    )
    print(f"   the shared rate-limit counter (database round trips) adds {session - uncounted:.3f} ms")
    if node:
        print(
            f"   old Node handler: import {node['import_ms']:.1f} ms, "
            f"first session {node['first_session_ms']:.1f} ms, "
            f"warm session median {node['warm_median_ms']:.3f} ms (p10 {node['warm_p10_ms']:.3f}, "
            f"p90 {node['warm_p90_ms']:.3f}), peak RSS {node['peak_rss_mb']:.0f} MB"
        )
        node_median = node["warm_median_ms"]
        for label, value in (("with", session), ("without", uncounted)):
            print(
                f"   session {label} the counter vs old Node handler: {value / node_median:.2f} x   "
                f"faster: {verdict(value < node_median)}"
            )
    else:
        print(
            "   old Node handler: not measured (needs node, npm and ../shared/reference/old-node-handler.md)"
        )

    print(f"\n3. A {big['items']:,}-message thread")
    print(f"   wall time through the handler  {big['wall_s']:.2f} s")
    print(
        f"   upstream requests              {big['upstream_requests']}   "
        f"target {BIG_THREAD_SIZE // PAGE_SIZE}"
    )
    print(
        f"   rendering alone                {big['render_s']:.3f} s   "
        f"target well under 1 s: {verdict(big['render_s'] < 0.5)}"
    )
    size = big["transcript_mb"]
    print(f"   transcript (text + HTML)       {size:.1f} MB")
    print(
        f"   resident memory growth         {big['resident_growth_mb']:.1f} MB "
        f"({big['resident_growth_mb'] / size:.1f} x the transcript)"
    )
    print(
        f"   peak of Python allocations     {big['traced_peak_mb']:.1f} MB "
        f"({big['traced_peak_mb'] / size:.1f} x; the mail is encoded several times on its way to SES)"
    )

    print("\n4. Peak RSS after serving both endpoints")
    print(f"   {rss['peak_rss_mb']:.1f} MB   target < 128: {verdict(rss['peak_rss_mb'] < 128)}")
    if node:
        print(f"   old Node handler: {node['peak_rss_mb']:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer runs (CI)")
    args = parser.parse_args()

    if not (PACKAGE / "chatkit_site" / "lambda_handler.py").is_file():
        raise SystemExit(f"No Lambda package at {PACKAGE}: build it with `make lambda-zip`.")
    bench = Bench(quick=args.quick)
    bench.start()
    try:
        print("Measuring cold starts...", flush=True)
        cold = bench.cold_starts()
        print("Measuring warm calls...", flush=True)
        warm = bench.warm()
        print("Mailing a long thread...", flush=True)
        big = bench.big_thread()
        rss = bench.peak_rss()
        print("Measuring the old Node handler...", flush=True)
        node = bench.old_node_handler()
        print("Importing managed threads...", flush=True)
        imported = bench.managed_import()
        print("Streaming answers, this service and the reference in turn...", flush=True)
        streaming = measure_streaming(args.quick, bench.streaming_database_url(), bench.workdir)
        bench.failures.extend(streaming_failures(streaming))
        report(bench.database, cold, warm, big, rss, node)
        report_import(imported)
        report_streaming(streaming)
    finally:
        bench.stop()
    if bench.failures:
        print("\nFAILED: " + "; ".join(bench.failures))
        sys.exit(1)


if __name__ == "__main__":
    main()
