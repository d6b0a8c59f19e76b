"""Threat: one request mailed twice (a network blip, a Lambda retry, a double click).

An Idempotency-Key replays the first result; a different body with the same key is 422, the
same key while the first request runs is 409; without a key an identical request within a
short window is the same request; a send that failed after recording is retried on the same
record, but not while another process may still be sending it.
"""

import threading
from collections import Counter
from dataclasses import asdict
from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.db import connections
from django.utils import timezone
from rest_framework.test import APIClient

from chatkit_api.idempotency import idempotency_claim
from chatkit_api.models import IdempotencyKey, Transcript, TranscriptStatus
from chatkit_api.rendering import Lead
from chatkit_api.services import ABANDONED_MESSAGE, transcripts_resend_queue
from tests.concurrency import fire_together
from tests.conftest import STAFF
from tests.fake_chatkit import Hold, user_message
from tests.mail_backends import ProcessKilled
from tests.test_transcript import LEAD, TRANSCRIPT_URL, send, server_client, visitor_with_thread

pytestmark = pytest.mark.django_db


def send_keyed(client, body, key):
    return client.post(TRANSCRIPT_URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def lookups(fake_chatkit, thread):
    return fake_chatkit.requests_to("GET", f"/v1/chatkit/threads/{thread.id}")


# --- with an Idempotency-Key -----------------------------------------------------------


def test_same_key_and_body_returns_the_first_result_without_sending_again(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])
    body = {"threadId": thread.id, **LEAD}

    first = send_keyed(server_client(), body, "order-42-recap")
    requests_after_first = len(fake_chatkit.requests)
    again = send_keyed(server_client(), body, "order-42-recap")

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() == {"ok": True, "id": Transcript.objects.get().id}
    assert len(ses.sent()) == 1
    # The replay asks OpenAI nothing.
    assert len(fake_chatkit.requests) == requests_after_first


def test_same_key_with_a_different_body_is_a_422(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    send_keyed(server_client(), {"threadId": thread.id, "name": "Sam"}, "key-1")

    response = send_keyed(server_client(), {"threadId": thread.id, "name": "Someone else"}, "key-1")

    assert response.status_code == 422
    assert response.json() == {"error": "This Idempotency-Key was already used with a different request."}
    assert Transcript.objects.count() == 1
    assert len(ses.sent()) == 1


def keyed_request_in_a_thread(body: dict, key: str) -> tuple[threading.Thread, list]:
    """A request with `key`, started in a thread of its own (with its own database
    connection); the list its reply goes into once the thread is joined."""
    replies: list = []

    def send_it() -> None:
        try:
            replies.append(send_keyed(server_client(), body, key))
        finally:
            connections.close_all()

    worker = threading.Thread(target=send_it)
    worker.start()
    return worker, replies


@pytest.mark.django_db(transaction=True)
def test_same_key_while_the_first_request_runs_is_a_409(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])
    body = {"threadId": thread.id, **LEAD}
    hold = fake_chatkit.hold("GET", f"/v1/chatkit/threads/{thread.id}")
    worker, first = keyed_request_in_a_thread(body, "double-click")
    assert hold.arrived.wait(timeout=10), "the first request never reached OpenAI"

    during = send_keyed(server_client(), body, "double-click")
    hold.release.set()
    worker.join()
    after = send_keyed(server_client(), body, "double-click")

    assert during.status_code == 409
    assert during.json() == {
        "error": "A request with this Idempotency-Key is still being processed. Try again shortly."
    }
    assert first[0].status_code == 200
    assert after.status_code == 200
    assert after.json() == first[0].json()
    assert len(ses.sent()) == 1
    assert Transcript.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_burst_with_one_key_sends_once(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])
    body = {"threadId": thread.id, **LEAD}

    responses = fire_together(8, lambda: send_keyed(server_client(), body, "burst"))

    statuses = Counter(response.status_code for response in responses)
    assert set(statuses) <= {200, 409}
    assert statuses[200] >= 1
    assert {response.json()["id"] for response in responses if response.status_code == 200} == {
        Transcript.objects.get().id
    }
    assert len(ses.sent()) == 1


def test_keys_are_per_caller(fake_chatkit, ses):
    first_visitor, first_thread = visitor_with_thread(fake_chatkit, [user_message("one")])
    second_visitor, second_thread = visitor_with_thread(fake_chatkit, [user_message("two")])

    responses = [
        send_keyed(first_visitor, {"threadId": first_thread.id}, "recap"),
        send_keyed(second_visitor, {"threadId": second_thread.id}, "recap"),
        send_keyed(server_client(), {"threadId": first_thread.id}, "recap"),
    ]

    # Neither visitor can replay, block or be refused because of the other's key.
    assert [response.status_code for response in responses] == [200, 200, 200]
    assert len({response.json()["id"] for response in responses}) == 3
    assert len(ses.sent()) == 3


def test_a_key_is_forgotten_once_expired(fake_chatkit, ses, settings):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    body = {"threadId": thread.id}
    send_keyed(server_client(), body, "daily-report")
    record = IdempotencyKey.objects.get()
    assert record.expires_at - record.created_at == timedelta(hours=settings.IDEMPOTENCY_KEY_HOURS)

    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = send_keyed(server_client(), body, "daily-report")

    assert response.status_code == 200
    assert Transcript.objects.count() == 2
    assert len(ses.sent()) == 2
    # The expired key was deleted; only the new one is kept.
    assert IdempotencyKey.objects.get().transcript_id == response.json()["id"]


def test_a_key_held_by_a_request_that_died_is_taken_over(fake_chatkit, ses, settings):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    body = {"threadId": thread.id}
    # Another instance claimed the key for this request, then its process was stopped.
    idempotency_claim(caller="server", key="stuck", request={"threadId": thread.id, **asdict(Lead())})

    assert send_keyed(server_client(), body, "stuck").status_code == 409

    IdempotencyKey.objects.update(locked_until=timezone.now() - timedelta(seconds=1))
    response = send_keyed(server_client(), body, "stuck")

    assert response.status_code == 200
    assert len(ses.sent()) == 1


@pytest.mark.parametrize("key", ["", " ", "has space", "é", "k" * 256, "tab\tkey"])
def test_a_malformed_key_is_a_400(fake_chatkit, ses, key):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])

    response = send_keyed(server_client(), {"threadId": thread.id}, key)

    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["fields"]
    assert fake_chatkit.requests == []
    assert Transcript.objects.count() == 0


def test_a_replay_does_not_count_against_the_thread_limit(fake_chatkit, ses, settings):
    settings.RATE_LIMIT_TRANSCRIPTS_PER_THREAD = (1, 3600)
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])

    statuses = [send_keyed(server_client(), {"threadId": thread.id}, "k").status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    assert len(ses.sent()) == 1


# --- without a key ---------------------------------------------------------------------


def test_an_identical_request_within_the_window_is_not_sent_twice(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    body = {"threadId": thread.id, "mode": "recap", **LEAD}

    first = send(server_client(), body)
    again = send(server_client(), body)

    assert again.status_code == 200
    assert again.json() == first.json()
    assert len(ses.sent()) == 1


def test_a_changed_request_is_sent(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])

    send(server_client(), {"threadId": thread.id, **LEAD})
    send(server_client(), {"threadId": thread.id, **LEAD, "phone": "+44 20 7946 0999"})
    send(server_client(), {"threadId": thread.id, **LEAD, "mode": "booking"})

    assert Transcript.objects.count() == 3
    assert len(ses.sent()) == 3


def test_an_identical_request_after_the_window_is_sent(fake_chatkit, ses, settings):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    body = {"threadId": thread.id}
    send(server_client(), body)
    record = IdempotencyKey.objects.get()
    assert record.expires_at - record.created_at == timedelta(
        seconds=max(settings.TRANSCRIPT_DUPLICATE_WINDOW_SECONDS, settings.IDEMPOTENCY_LOCK_SECONDS)
    )

    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    send(server_client(), body)

    assert len(ses.sent()) == 2


# --- retries of a request that failed ----------------------------------------------------


@pytest.mark.parametrize("key", ["retry-after-ses-failure", None], ids=["with-key", "without-key"])
def test_a_send_that_failed_after_recording_is_retried_on_the_same_record(fake_chatkit, ses, settings, key):
    settings.DEFAULT_FROM_EMAIL = "unverified@shop.example"
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("please call me")])
    body = {"threadId": thread.id, **LEAD}
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}

    failed = server_client().post(TRANSCRIPT_URL, body, format="json", **headers)
    ses.client.verify_email_identity(EmailAddress="unverified@shop.example")
    items_read = len(fake_chatkit.requests_to("GET", f"/v1/chatkit/threads/{thread.id}/items"))
    retried = server_client().post(TRANSCRIPT_URL, body, format="json", **headers)
    replayed = server_client().post(TRANSCRIPT_URL, body, format="json", **headers)

    transcript = Transcript.objects.get()
    assert failed.status_code == 502
    assert failed.json()["id"] == transcript.id
    assert retried.status_code == replayed.status_code == 200
    assert retried.json() == replayed.json() == {"ok": True, "id": transcript.id}
    assert transcript.status == TranscriptStatus.SENT
    assert transcript.attempts == 2
    assert [email.status for email in transcript.emails.all()] == [
        TranscriptStatus.FAILED,
        TranscriptStatus.SENT,
    ]
    [mail] = ses.sent()
    assert mail.destinations == [STAFF]
    # The stored text was sent; the thread was not read again.
    assert len(fake_chatkit.requests_to("GET", f"/v1/chatkit/threads/{thread.id}/items")) == items_read


# The same click again after the duplicate window: a new key, or no key and the window over.
LATER_CLICKS = {"new-key": ("click-1", "click-2"), "no-key": (None, None)}


@pytest.mark.parametrize("caller", ["server", "visitor"])
@pytest.mark.parametrize("keys", LATER_CLICKS.values(), ids=LATER_CLICKS.keys())
def test_the_same_request_after_the_window_sends_the_transcript_that_failed_not_a_second(
    fake_chatkit, ses, settings, caller, keys
):
    settings.DEFAULT_FROM_EMAIL = "unverified@shop.example"
    if caller == "server":
        client, thread = server_client(), fake_chatkit.add_thread(user="visitor_abc", items=[])
    else:
        client, thread = visitor_with_thread(fake_chatkit, [])
    fake_chatkit.add_items(thread, [user_message("please call me")])
    body = {"threadId": thread.id, **LEAD}

    def click(key):
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
        return client.post(TRANSCRIPT_URL, body, format="json", **headers)

    failed = click(keys[0])
    ses.client.verify_email_identity(EmailAddress="unverified@shop.example")
    fake_chatkit.add_items(thread, [user_message("any time after 5")])
    with time_machine.travel(timezone.now() + timedelta(minutes=6)):
        again = click(keys[1])
        call_command("resend_transcript", "--failed", verbosity=0)

    # Staff get one mail of the conversation, as it was at the second request.
    [mail] = ses.sent()
    assert "User: any time after 5" in mail.text
    transcript = Transcript.objects.get()
    assert failed.status_code == 502
    assert failed.json()["id"] == transcript.id
    assert again.status_code == 200
    assert again.json() == {"ok": True, "id": transcript.id}
    assert "User: any time after 5" in transcript.body_text
    assert (transcript.status, transcript.attempts) == (TranscriptStatus.SENT, 2)
    assert [email.status for email in transcript.emails.all()] == [
        TranscriptStatus.FAILED,
        TranscriptStatus.SENT,
    ]


def test_the_same_request_while_the_one_that_failed_is_resent_waits_for_that_resend(
    fake_chatkit, ses, settings
):
    settings.DEFAULT_FROM_EMAIL = "unverified@shop.example"
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("please call me")])
    body = {"threadId": thread.id, **LEAD}
    failed = send_keyed(server_client(), body, "click-1")
    ses.client.verify_email_identity(EmailAddress="unverified@shop.example")
    transcript = Transcript.objects.get()
    # An operator's resend of it has begun.
    Transcript.objects.filter(pk=transcript.pk).update(sending_since=timezone.now())

    during = send_keyed(server_client(), body, "click-2")
    Transcript.objects.filter(pk=transcript.pk).update(sending_since=None, status=TranscriptStatus.SENT)
    after = send_keyed(server_client(), body, "click-2")

    assert failed.status_code == 502
    assert during.status_code == 409
    assert during.json()["id"] == transcript.id
    # The retry finds the transcript its key was tied to, sent now: nothing is sent or recorded.
    assert after.status_code == 200
    assert after.json() == {"ok": True, "id": transcript.id}
    assert Transcript.objects.count() == 1
    assert ses.sent() == []


@pytest.mark.parametrize(
    ("caller", "change"),
    [("server", {"phone": "+44 20 7946 0999"}), ("server", {"mode": "booking"}), ("visitor", {})],
    ids=["other-phone", "other-mode", "other-caller"],
)
def test_a_request_that_differs_from_the_one_that_failed_is_a_transcript_of_its_own(
    fake_chatkit, ses, settings, caller, change
):
    settings.DEFAULT_FROM_EMAIL = "unverified@shop.example"
    browser, thread = visitor_with_thread(fake_chatkit, [user_message("please call me")])
    body = {"threadId": thread.id, **LEAD}
    failed = send(server_client(), body)
    ses.client.verify_email_identity(EmailAddress="unverified@shop.example")

    other = send(server_client() if caller == "server" else browser, {**body, **change})

    assert failed.status_code == 502
    assert other.status_code == 200
    assert other.json()["id"] != failed.json()["id"]
    assert len(ses.sent()) == 1
    # The one that failed is still waiting for a resend.
    assert [transcript.id for transcript in transcripts_resend_queue()] == [failed.json()["id"]]


def test_a_retry_after_openai_failed_mid_request_reads_the_thread_then(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hello again")])
    fake_chatkit.fail("GET", f"/v1/chatkit/threads/{thread.id}/items", 503)
    body = {"threadId": thread.id, **LEAD}

    failed = send_keyed(server_client(), body, "k")
    fake_chatkit.failures.clear()
    retried = send_keyed(server_client(), body, "k")

    assert failed.status_code == 502
    assert retried.status_code == 200
    transcript = Transcript.objects.get()
    assert retried.json()["id"] == transcript.id
    assert "User: hello again" in ses.sent()[0].text


def test_a_request_that_failed_before_recording_leaves_the_key_free(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    fake_chatkit.fail("GET", f"/v1/chatkit/threads/{thread.id}", 500)
    body = {"threadId": thread.id}

    failed = send_keyed(server_client(), body, "k")
    assert IdempotencyKey.objects.count() == 0
    fake_chatkit.failures.clear()
    retried = send_keyed(server_client(), body, "k")

    assert failed.status_code == 502
    assert retried.status_code == 200
    assert len(ses.sent()) == 1


def test_someone_elses_thread_leaves_nothing_behind(fake_chatkit, ses):
    browser, _ = visitor_with_thread(fake_chatkit, [])
    other = fake_chatkit.add_thread(user="visitor_someone_else", items=[])

    assert send_keyed(browser, {"threadId": other.id}, "k").status_code == 404

    assert IdempotencyKey.objects.count() == 0
    assert Transcript.objects.count() == 0


def test_a_visitor_cannot_learn_of_someone_elses_send_by_repeating_it(fake_chatkit, ses):
    owner, thread = visitor_with_thread(fake_chatkit, [user_message("mine")])
    stranger = APIClient(HTTP_ORIGIN="http://testserver")
    stranger.post("/api/chatkit/session", {}, format="json")
    body = {"threadId": thread.id}

    assert send(owner, body).status_code == 200

    assert send(stranger, body).status_code == 404
    assert send_keyed(stranger, body, "guess").status_code == 404


# --- a request whose process died, or stalls, while SES is asked ------------------------


def test_a_send_whose_process_died_is_left_alone_until_it_is_surely_dead_then_sent_once(
    fake_chatkit, send_trouble, ses, settings
):
    settings.TRANSCRIPT_PENDING_TIMEOUT_MINUTES = 15
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("please call me")])
    body = {"threadId": thread.id, **LEAD}
    send_trouble.kill_next = True
    with pytest.raises(ProcessKilled):
        send_keyed(server_client(), body, "killed")
    transcript = Transcript.objects.get()
    assert (transcript.status, transcript.attempts) == (TranscriptStatus.PENDING, 0)
    assert transcript.sending_since is not None

    # Past the key's lock, but not past the longest a request can run: the first request
    # might still be waiting for SES, so neither a retry nor the resend queue sends it.
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        too_soon = send_keyed(server_client(), body, "killed")
        queued_too_soon = list(transcripts_resend_queue())
    assert too_soon.status_code == 409
    assert too_soon.json() == {
        "error": "This transcript is already being sent. Try again shortly.",
        "id": transcript.id,
    }
    assert queued_too_soon == []
    assert ses.sent() == []

    with time_machine.travel(timezone.now() + timedelta(minutes=16)):
        assert list(transcripts_resend_queue()) == [transcript]
        call_command("resend_transcript", "--failed", verbosity=0)
        replayed = send_keyed(server_client(), body, "killed")

    [mail] = ses.sent()
    assert "User: please call me" in mail.text
    assert replayed.status_code == 200
    assert replayed.json() == {"ok": True, "id": transcript.id}
    transcript.refresh_from_db()
    assert transcript.status == TranscriptStatus.SENT
    assert (transcript.sending_since, transcript.error) == (None, "")
    # The attempt that died is counted and its message says what is known of it.
    assert transcript.attempts == 2
    abandoned, sent = transcript.emails.all()
    assert (abandoned.status, abandoned.error) == (TranscriptStatus.FAILED, ABANDONED_MESSAGE)
    assert (sent.status, sent.ses_message_id) == (TranscriptStatus.SENT, mail.message_id)


@pytest.mark.django_db(transaction=True)
def test_a_retry_while_ses_is_slow_to_answer_the_first_request_does_not_send_again(
    fake_chatkit, send_trouble, ses
):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])
    body = {"threadId": thread.id, **LEAD}
    slow_ses = Hold()
    send_trouble.holds.append(slow_ses)
    worker, first = keyed_request_in_a_thread(body, "slow")
    assert slow_ses.arrived.wait(timeout=10), "the first request never reached SES"
    # The key's lock lapses while the first request still waits for SES.
    IdempotencyKey.objects.update(locked_until=timezone.now() - timedelta(seconds=1))

    during = send_keyed(server_client(), body, "slow")
    slow_ses.release.set()
    worker.join()
    after = send_keyed(server_client(), body, "slow")

    transcript = Transcript.objects.get()
    assert during.status_code == 409
    assert during.json()["id"] == transcript.id
    assert first[0].status_code == after.status_code == 200
    assert len(ses.sent()) == 1
    assert transcript.attempts == 1
    assert [email.status for email in transcript.emails.all()] == [TranscriptStatus.SENT]
