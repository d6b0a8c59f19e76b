"""Threat: floods that cost money (ChatKit sessions) or send mail under the site's domain.

Limits are counted in a store every instance shares (the database, or Redis), so they hold
across instances; a burst of
concurrent requests must not get past a limit; a forged X-Forwarded-For must not reset one.
"""

import json
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from datetime import timedelta

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from chatkit_api import openai_gateway
from chatkit_api.exceptions import RateLimited
from chatkit_api.models import RateLimitCounter, Transcript
from chatkit_api.ratelimits import SESSIONS_PER_IP, ip_subject, rate_limit_consume, rate_limit_reset
from chatkit_site import env
from chatkit_site.env import env_rate
from chatkit_site.lambda_handler import handler
from tests.concurrency import fire_together
from tests.fake_chatkit import user_message
from tests.lambda_events import http_api_v2_event, rest_api_v1_event
from tests.loopback import blackhole
from tests.security.helpers import lambda_header
from tests.test_transcript import LEAD, send, server_client, visitor_with_thread

pytestmark = pytest.mark.django_db

SESSION_URL = "/api/chatkit/session"


def session_from(ip):
    return APIClient(REMOTE_ADDR=ip).post(SESSION_URL, {}, format="json")


def assert_rate_limited(response, *, within):
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= within
    body = response.json()
    assert body["retry_after"] == retry_after
    assert body["error"].startswith("Too many requests: at most ")
    assert f"Try again in {retry_after} seconds." in body["error"]


# --- sessions per client address -----------------------------------------------------


def test_sessions_over_the_limit_get_a_429_and_reach_no_one(fake_chatkit, settings):
    settings.RATE_LIMIT_SESSIONS_PER_IP = (3, 3600)

    statuses = [session_from("198.51.100.1").status_code for _ in range(3)]
    over = session_from("198.51.100.1")

    assert statuses == [200, 200, 200]
    assert_rate_limited(over, within=3600)
    assert "at most 3 chat sessions from one address per hour" in over.json()["error"]
    assert len(fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")) == 3
    # Another address has its own count.
    assert session_from("198.51.100.2").status_code == 200


def test_each_chatkit_session_carries_the_configured_limits(fake_chatkit, settings):
    settings.CHATKIT_SESSION_EXPIRES_SECONDS = 300
    settings.CHATKIT_SESSION_MAX_REQUESTS_PER_MINUTE = 4
    before = int(time.time())

    response = session_from("198.51.100.9")

    [request] = fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")
    assert request.body["expires_after"] == {"anchor": "created_at", "seconds": 300}
    assert request.body["rate_limits"] == {"max_requests_per_1_minute": 4}
    assert before + 300 <= response.json()["expires_at"] <= int(time.time()) + 300


def test_chatkit_session_limits_default_to_openais_own(fake_chatkit):
    session_from("198.51.100.9")

    [request] = fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")
    assert request.body["expires_after"] == {"anchor": "created_at", "seconds": 600}
    assert request.body["rate_limits"] == {"max_requests_per_1_minute": 10}


def test_ipv6_addresses_count_by_their_64_network(fake_chatkit, settings):
    settings.RATE_LIMIT_SESSIONS_PER_IP = (2, 3600)

    assert session_from("2001:db8:1:1::1").status_code == 200
    assert session_from("2001:db8:1:1:ffff::2").status_code == 200
    assert session_from("2001:db8:1:1::3").status_code == 429
    assert session_from("2001:db8:1:2::1").status_code == 200


def test_ip_subject():
    assert ip_subject("203.0.113.9") == "203.0.113.9"
    assert ip_subject("2001:db8:1:1:aaaa::1") == "2001:db8:1:1::/64"
    assert ip_subject("::ffff:203.0.113.9") == "203.0.113.9"
    assert ip_subject("") == ""


def test_a_window_that_has_passed_counts_again(fake_chatkit, settings):
    settings.RATE_LIMIT_SESSIONS_PER_IP = (1, 1)
    assert session_from("198.51.100.3").status_code == 200
    over = session_from("198.51.100.3")
    if over.status_code == 200:
        # The first request was the last of its one-second window.
        over = session_from("198.51.100.3")
    assert over.status_code == 429

    time.sleep(int(over["Retry-After"]))

    assert session_from("198.51.100.3").status_code == 200


def test_off_means_no_limit(fake_chatkit, settings):
    settings.RATE_LIMIT_SESSIONS_PER_IP = None

    assert {session_from("198.51.100.4").status_code for _ in range(5)} == {200}


@pytest.mark.parametrize(
    "make_event",
    [
        lambda forged: http_api_v2_event(source_ip="203.0.113.7", headers={"x-forwarded-for": forged}),
        lambda forged: rest_api_v1_event(source_ip="203.0.113.7", headers={"X-Forwarded-For": forged}),
    ],
    ids=["http-api", "rest-api"],
)
def test_a_forged_x_forwarded_for_does_not_reset_the_count(fake_chatkit, settings, make_event):
    settings.RATE_LIMIT_SESSIONS_PER_IP = (2, 3600)

    responses = [handler(make_event(f"10.0.0.{n}, 192.0.2.{n}"), None) for n in range(1, 4)]

    assert [response["statusCode"] for response in responses] == [200, 200, 429]
    assert json.loads(responses[2]["body"])["error"].startswith("Too many requests")
    assert 1 <= int(lambda_header(responses[2], "Retry-After")) <= 3600
    other = handler(
        http_api_v2_event(source_ip="203.0.113.8", headers={"x-forwarded-for": "203.0.113.7"}), None
    )
    assert other["statusCode"] == 200


# --- transcripts per address, per thread, per recipient --------------------------------


def test_visitor_transcripts_are_limited_per_address(fake_chatkit, ses, settings):
    settings.RATE_LIMIT_TRANSCRIPTS_PER_IP = (2, 3600)
    browser, thread = visitor_with_thread(fake_chatkit, [user_message("hi")])

    first = send(browser, {"threadId": thread.id, "details": "one"})
    second = send(browser, {"threadId": thread.id, "details": "two"})
    lookups_before = len(fake_chatkit.requests)
    over = send(browser, {"threadId": thread.id, "details": "three"})

    assert (first.status_code, second.status_code) == (200, 200)
    assert_rate_limited(over, within=3600)
    assert "transcript requests from one address" in over.json()["error"]
    # Refused before OpenAI is asked anything, and nothing is recorded or sent.
    assert len(fake_chatkit.requests) == lookups_before
    assert Transcript.objects.count() == 2
    assert len(ses.sent()) == 2


def test_server_callers_are_not_limited_per_address(fake_chatkit, ses, settings):
    settings.RATE_LIMIT_TRANSCRIPTS_PER_IP = (1, 3600)
    threads = [fake_chatkit.add_thread(user="visitor_abc", items=[]) for _ in range(3)]

    statuses = [send(server_client(), {"threadId": thread.id}).status_code for thread in threads]

    assert statuses == [200, 200, 200]


def test_transcripts_are_limited_per_thread(fake_chatkit, ses, settings):
    settings.RATE_LIMIT_TRANSCRIPTS_PER_THREAD = (2, 3600)
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])
    other = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])

    statuses = [
        send(server_client(), {"threadId": thread.id, "details": f"{n}"}).status_code for n in range(2)
    ]
    over = send(server_client(), {"threadId": thread.id, "details": "again"})

    assert statuses == [200, 200]
    assert_rate_limited(over, within=3600)
    assert "transcripts of one conversation" in over.json()["error"]
    assert Transcript.objects.count() == 2
    assert len(ses.sent()) == 2
    assert send(server_client(), {"threadId": other.id}).status_code == 200


def test_someone_elses_thread_limit_cannot_be_used_up(fake_chatkit, ses, settings):
    settings.RATE_LIMIT_TRANSCRIPTS_PER_THREAD = (1, 3600)
    owner, thread = visitor_with_thread(fake_chatkit, [user_message("mine")])
    stranger, _ = visitor_with_thread(fake_chatkit, [])

    assert [send(stranger, {"threadId": thread.id}).status_code for _ in range(3)] == [404, 404, 404]

    assert send(owner, {"threadId": thread.id}).status_code == 200


def test_visitor_copies_are_limited_per_recipient_address(fake_chatkit, ses, settings):
    settings.ALLOW_USER_RECAP = True
    settings.RATE_LIMIT_VISITOR_COPIES_PER_ADDRESS = (1, 3600)
    first, second, third = (fake_chatkit.add_thread(user="visitor_abc", items=[]) for _ in range(3))

    sent = send(server_client(), {"threadId": first.id, "mode": "recap", "email": "zoe@visitor.example"})
    # The same mailbox, however it is capitalised.
    over = send(server_client(), {"threadId": second.id, "mode": "recap", "email": "Zoe@Visitor.example"})
    # Staff-only mail mentioning the address is not a copy to it.
    quote = send(server_client(), {"threadId": third.id, "mode": "quote", "email": "zoe@visitor.example"})

    assert sent.status_code == 200
    assert_rate_limited(over, within=3600)
    assert "transcript copies to one email address" in over.json()["error"]
    assert quote.status_code == 200
    assert [mail.destinations for mail in ses.sent()] == [
        ["leads@shop.example"],
        ["zoe@visitor.example"],
        ["leads@shop.example"],
    ]


def test_spellings_of_one_inbox_count_as_one_address(fake_chatkit, ses, settings):
    settings.ALLOW_USER_RECAP = True
    settings.RATE_LIMIT_VISITOR_COPIES_PER_ADDRESS = (3, 3600)
    spellings = ["victim@gmail.com", "victim+1@gmail.com", "v.ictim@gmail.com", "Vic.Tim+x@googlemail.com"]
    # Each from a visitor of its own, so that only the per-address limit can refuse.
    threads = [fake_chatkit.add_thread(user=f"visitor_{n}", items=[]) for n in range(len(spellings))]

    replies = [
        send(server_client(), {"threadId": thread.id, "mode": "recap", "email": email})
        for thread, email in zip(threads, spellings, strict=True)
    ]

    assert [reply.status_code for reply in replies] == [200, 200, 200, 429]
    assert "transcript copies to one email address" in replies[-1].json()["error"]
    # Dots count elsewhere: another provider may deliver them to other people.
    other = fake_chatkit.add_thread(user="visitor_other", items=[])
    body = {"threadId": other.id, "mode": "recap", "email": "v.ictim@visitor.example"}
    assert send(server_client(), body).status_code == 200


def test_visitor_copies_are_limited_per_visitor(fake_chatkit, ses, settings):
    settings.ALLOW_USER_RECAP = True
    settings.RATE_LIMIT_VISITOR_COPIES_PER_VISITOR = (2, 86400)
    threads = [fake_chatkit.add_thread(user="visitor_abc", items=[]) for _ in range(3)]

    codes = [
        send(
            server_client(), {"threadId": thread.id, "mode": "recap", "email": f"friend{n}@visitor.example"}
        ).status_code
        for n, thread in enumerate(threads)
    ]

    assert codes == [200, 200, 429]


def test_visitor_copies_asked_for_from_one_address_are_limited(fake_chatkit, ses, settings):
    settings.ALLOW_USER_RECAP = True
    settings.RATE_LIMIT_VISITOR_COPIES_PER_IP = (2, 3600)
    browsers = [visitor_with_thread(fake_chatkit, []) for _ in range(3)]

    codes = [
        send(
            browser, {"threadId": thread.id, "mode": "recap", "email": f"friend{n}@visitor.example"}
        ).status_code
        for n, (browser, thread) in enumerate(browsers)
    ]

    assert codes == [200, 200, 429]


def test_visitor_copies_have_a_site_wide_cap(fake_chatkit, ses, settings):
    settings.ALLOW_USER_RECAP = True
    settings.RATE_LIMIT_VISITOR_COPIES_SITE_WIDE = (2, 86400)
    threads = [fake_chatkit.add_thread(user=f"visitor_{n}", items=[]) for n in range(3)]

    replies = [
        send(server_client(), {"threadId": thread.id, "mode": "recap", "email": f"friend{n}@visitor.example"})
        for n, thread in enumerate(threads)
    ]

    assert [reply.status_code for reply in replies] == [200, 200, 429]
    assert "transcript copies to visitors" in replies[-1].json()["error"]


def test_a_refused_transcript_reply_keeps_the_lead_out_of_the_log(fake_chatkit, ses, settings):
    settings.RATE_LIMIT_TRANSCRIPTS_PER_THREAD = (1, 3600)
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    send(server_client(), {"threadId": thread.id})

    over = send(server_client(), {"threadId": thread.id, **LEAD})

    assert over.status_code == 429
    assert LEAD["phone"] not in over.content.decode()
    assert not Transcript.objects.filter(phone=LEAD["phone"]).exists()


# --- the shared counters ------------------------------------------------------------------


def test_a_new_window_clears_the_counters_of_windows_that_are_over(fake_chatkit, settings):
    settings.RATE_LIMIT_SESSIONS_PER_IP = (5, 3600)
    stale = RateLimitCounter.objects.create(
        key="ratelimit:old", count=3, expires_at=timezone.now() - timedelta(minutes=1)
    )
    live = RateLimitCounter.objects.create(
        key="ratelimit:live", count=3, expires_at=timezone.now() + timedelta(minutes=1)
    )

    assert session_from("198.51.100.6").status_code == 200

    keys = set(RateLimitCounter.objects.values_list("key", flat=True))
    assert stale.key not in keys
    assert live.key in keys
    [counted] = keys - {live.key}
    assert RateLimitCounter.objects.get(key=counted).count == 1
    # The subject is hashed: no address is stored in clear.
    assert "198.51.100.6" not in counted


def test_postgresql_keeps_the_counters_out_of_the_write_ahead_log():
    # Every session call bumps a counter; in an unlogged table the commit does not wait for
    # the disk. Elsewhere (SQLite) the table is an ordinary one.
    if connection.vendor != "postgresql":
        pytest.skip("unlogged tables are PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relpersistence FROM pg_class WHERE oid = %s::regclass",
            [RateLimitCounter._meta.db_table],
        )
        assert cursor.fetchone() == ("u",)


def test_an_unreachable_counter_store_refuses_rather_than_lets_everything_through(fake_chatkit, settings):
    # Nothing listens on the discard port.
    settings.REDIS_URL = "redis://127.0.0.1:9/0"

    response = session_from("198.51.100.5")

    assert response.status_code == 503
    assert response.json() == {
        "error": "Requests cannot be counted right now, so none are accepted. Try again later."
    }
    assert fake_chatkit.requests == []


def test_a_counter_store_that_never_answers_refuses_within_a_database_wait(fake_chatkit, settings):
    settings.STORE_WAIT_SECONDS = 0.5
    with blackhole() as port:
        settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
        started = time.monotonic()
        response = session_from("198.51.100.5")
        waited = time.monotonic() - started

    assert response.status_code == 503
    assert waited < 1
    assert fake_chatkit.requests == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10/hour", (10, 3600)),
        ("1/second", (1, 1)),
        ("30/minute", (30, 60)),
        ("5/day", (5, 86400)),
        ("off", None),
    ],
)
def test_limits_are_written_count_per_period(monkeypatch, raw, expected):
    monkeypatch.setitem(env.source, "RATE_LIMIT_TEST", raw)

    assert env_rate("RATE_LIMIT_TEST", "1/hour") == expected


@pytest.mark.parametrize("raw", ["10", "0/hour", "-1/hour", "ten/hour", "10/week", "10/hours", "10 per hour"])
def test_a_malformed_limit_stops_the_start(monkeypatch, raw):
    monkeypatch.setitem(env.source, "RATE_LIMIT_TEST", raw)

    with pytest.raises(ImproperlyConfigured, match="RATE_LIMIT_TEST must look like 10/hour"):
        env_rate("RATE_LIMIT_TEST", "1/hour")


# --- concurrent bursts ----------------------------------------------------------------------

BURST = 40
LIMIT = 10


def consume_once():
    try:
        rate_limit_consume(limit=SESSIONS_PER_IP, subject="203.0.113.50")
    except RateLimited:
        return "refused"
    return "allowed"


@pytest.fixture
def redis_counters(settings):
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip(
            "REDIS_URL is not set: the Redis path needs a running Redis, e.g. REDIS_URL=redis://127.0.0.1:6379/5"
        )
    settings.REDIS_URL = url

    def clear():
        with redis.Redis.from_url(url) as client:
            for key in client.scan_iter("chatkit:ratelimit:*"):
                client.delete(key)

    clear()
    yield
    clear()


@pytest.mark.django_db
@pytest.mark.parametrize("store", ["database", "redis"])
def test_a_reset_forgets_what_a_subject_used_in_this_window_only(settings, request, store):
    if store == "redis":
        request.getfixturevalue("redis_counters")
    settings.RATE_LIMIT_SESSIONS_PER_IP = (1, 3600)
    for subject in ("192.0.2.1", "192.0.2.2"):
        rate_limit_consume(limit=SESSIONS_PER_IP, subject=subject)

    rate_limit_reset(limit=SESSIONS_PER_IP, subject="192.0.2.1")

    rate_limit_consume(limit=SESSIONS_PER_IP, subject="192.0.2.1")
    with pytest.raises(RateLimited):
        rate_limit_consume(limit=SESSIONS_PER_IP, subject="192.0.2.2")


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_burst_gets_exactly_the_limit_from_the_database(settings):
    settings.RATE_LIMIT_SESSIONS_PER_IP = (LIMIT, 3600)

    outcomes = Counter(fire_together(BURST, consume_once))

    assert outcomes == {"allowed": LIMIT, "refused": BURST - LIMIT}


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_burst_gets_exactly_the_limit_from_redis(settings, redis_counters):
    settings.RATE_LIMIT_SESSIONS_PER_IP = (LIMIT, 3600)

    outcomes = Counter(fire_together(BURST, consume_once))

    assert outcomes == {"allowed": LIMIT, "refused": BURST - LIMIT}


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_burst_of_http_requests_gets_exactly_the_limit(live_server, fake_chatkit, settings):
    settings.RATE_LIMIT_SESSIONS_PER_IP = (4, 3600)
    burst = 16

    def post():
        # The test server's own http:// address.
        url = f"{live_server.url}{SESSION_URL}"
        request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, response.headers
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.headers

    # Built before the burst: threads that all miss the client cache at once would each
    # build a client, and the extra ones would be dropped with their connections open.
    client = openai_gateway._client()
    responses = fire_together(burst, post)
    client.close()

    assert Counter(status for status, _ in responses) == {200: 4, 429: burst - 4}
    assert all(1 <= int(headers["Retry-After"]) <= 3600 for status, headers in responses if status == 429)
    assert len(fake_chatkit.requests_to("POST", "/v1/chatkit/sessions")) == 4
