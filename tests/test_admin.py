import csv
import io
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chatkit_api.models import (
    DeliveryReport,
    DeliveryState,
    EmailAudience,
    Transcript,
    TranscriptEmail,
    TranscriptStatus,
)
from tests.conftest import STAFF, TOKEN
from tests.fake_chatkit import user_message

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:chatkit_api_transcript_changelist")


def detail_url(transcript: Transcript) -> str:
    return reverse("admin:chatkit_api_transcript_change", args=[transcript.pk])


def transcript(name: str = "Sam", *, at: datetime | None = None, **fields) -> Transcript:
    values = {
        "thread_id": f"cthr_{name.lower().replace(' ', '_')}",
        "requested_by": "visitor",
        "name": name,
        "email": f"{name.split()[0].lower()}@visitor.example",
        "mode": "quote",
        "status": TranscriptStatus.SENT,
        "recipients": [STAFF],
        "subject": f"[Chat] {name} - quote",
        "body_text": f"Mode: quote\nName: {name}\n\n---\n\n[2026-11-25 16:49 UTC] User: hello from {name}\n",
        "body_html": f"<p>hello from {name}</p>",
        **fields,
    }
    with time_machine.travel(at or datetime(2026, 11, 25, 16, 49, tzinfo=UTC), tick=False):
        return Transcript.objects.create(**values)


def staff_in(group_name: str, username: str) -> Client:
    user = User.objects.create_user(username=username, password="not-used", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name))
    client = Client()
    client.force_login(user)
    return client


def run_action(client: Client, action: str, transcripts: list[Transcript]):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [str(t.pk) for t in transcripts]},
        follow=action != "export_csv",
    )


def names_listed(response) -> list[str]:
    return [row.name for row in response.context["cl"].result_list]


# --- the changelist ------------------------------------------------------------------------


def test_changelist_shows_the_columns_newest_first(admin_client):
    transcript("Older Olga", at=datetime(2026, 11, 20, 9, 0, tzinfo=UTC))
    transcript(
        "Newer Nick", at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC), delivery_state=DeliveryState.BOUNCED
    )

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert names_listed(response) == ["Newer Nick", "Older Olga"]
    page = response.content.decode()
    for header in ("Created at", "Name", "Email", "Mode", "Recipients", "Status", "Delivery state"):
        assert f">{header}<" in page or f">{header}</a>" in page
    assert "newer@visitor.example" in page
    assert "Bounced" in page
    assert STAFF in page


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Olga", ["Olga Ortiz"]),
        ("nick@visitor", ["Nick Nolan"]),
        ("7946 0001", ["Olga Ortiz"]),
        ("Octavia", ["Nick Nolan"]),
        ("cthr_olga", ["Olga Ortiz"]),
        ("hello from Nick", ["Nick Nolan"]),
        ("nobody", []),
    ],
    ids=["name", "email", "phone", "vehicle", "thread", "text", "no-match"],
)
def test_search(admin_client, query, expected):
    transcript("Olga Ortiz", phone="+44 20 7946 0001", vehicle="Ford Focus")
    transcript("Nick Nolan", phone="+44 20 7946 0002", vehicle="Skoda Octavia")

    response = admin_client.get(CHANGELIST, {"q": query})

    assert names_listed(response) == expected


def test_filters(admin_client):
    transcript(
        "Failed Fay", status=TranscriptStatus.FAILED, mode="recap", at=datetime(2026, 10, 2, tzinfo=UTC)
    )
    transcript("Bounced Ben", delivery_state=DeliveryState.BOUNCED, at=datetime(2026, 11, 3, tzinfo=UTC))
    transcript("Quiet Quinn", at=datetime(2026, 11, 4, tzinfo=UTC))

    def listed(**params):
        return sorted(names_listed(admin_client.get(CHANGELIST, params)))

    assert listed(status__exact="failed") == ["Failed Fay"]
    assert listed(mode="recap") == ["Failed Fay"]
    assert listed(delivery_state__exact="bounced") == ["Bounced Ben"]
    assert listed(delivery_state__exact="unreported") == ["Failed Fay", "Quiet Quinn"]
    assert listed(created_at__year="2026", created_at__month="11") == ["Bounced Ben", "Quiet Quinn"]
    assert listed(
        created_at__gte="2026-11-04 00:00:00+00:00", created_at__lt="2026-11-05 00:00:00+00:00"
    ) == ["Quiet Quinn"]


def test_a_page_of_a_hundred_rows_is_a_handful_of_queries_without_the_bodies(admin_client):
    for n in range(120):
        transcript(f"Visitor {n:03d}", at=datetime(2026, 11, 25, tzinfo=UTC) - timedelta(hours=n))
    Transcript.objects.update(body_html="<p>" + "x" * 20_000 + "</p>")

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == 100
    # Session, user, the count, the page's rows, the date hierarchy's range and days, and
    # the mode filter's values: a fixed number, whatever the page holds.
    assert len(captured) <= 7, "\n".join(query["sql"] for query in captured.captured_queries)
    row_queries = [query["sql"] for query in captured.captured_queries if "LIMIT 100" in query["sql"]]
    assert len(row_queries) == 1
    for column in ("body_text", "body_html", "details", "error"):
        assert f'"{column}"' not in row_queries[0]


# --- the detail page -----------------------------------------------------------------------


def test_detail_shows_the_mail_as_staff_read_it_read_only(admin_client, fake_chatkit, ses, api):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("<b>Front</b> brakes & discs?")])
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    api.post(
        "/api/chatkit/transcript",
        {"threadId": thread.id, "name": "Zoë", "pageUrl": "https://shop.example/quote?ref=chat&x=1"},
        format="json",
    )
    sent = Transcript.objects.get()
    [mail] = ses.sent()

    response = admin_client.get(detail_url(sent))

    assert response.status_code == 200
    page = response.content.decode()
    # The mail's own HTML, escaped once more for the srcdoc attribute of a sandboxed frame.
    assert '<iframe sandbox=""' in page
    assert 'srcdoc="&lt;!DOCTYPE html&gt;' in page
    assert "&amp;lt;b&amp;gt;Front&amp;lt;/b&amp;gt; brakes &amp;amp; discs?" in page
    assert "User: &lt;b&gt;Front&lt;/b&gt; brakes &amp; discs?" in page
    assert (
        '<a href="https://shop.example/quote?ref=chat&amp;x=1" target="_blank" rel="noopener noreferrer">'
        in page
    )
    assert mail.message_id in page
    assert "[Chat] Zoë - quote" in page
    # Recipients as staff write them, not as the JSON they are stored in.
    assert re.search(rf'<td class="field-recipients">\s*<p>{re.escape(STAFF)}</p>', page)
    assert f"[&quot;{STAFF}&quot;]" not in page
    # A log: nothing to edit or save.
    assert 'name="name"' not in page
    assert 'name="_save"' not in page


def test_detail_does_not_link_a_page_that_is_not_a_web_address(admin_client):
    shown = transcript("Sam", page_url="javascript:alert(1)")

    page = admin_client.get(detail_url(shown)).content.decode()

    assert "javascript:alert(1)" in page
    assert 'href="javascript:' not in page


def test_detail_says_whether_the_transcript_is_being_sent(admin_client, settings):
    settings.TRANSCRIPT_PENDING_TIMEOUT_MINUTES = 15
    now = datetime(2026, 11, 25, 17, 0, tzinfo=UTC)
    idle = transcript("Idle")
    sending = transcript("Sending", status=TranscriptStatus.PENDING, sending_since=now - timedelta(minutes=1))
    dead = transcript("Dead", status=TranscriptStatus.PENDING, sending_since=now - timedelta(minutes=16))

    with time_machine.travel(now, tick=False):
        pages = [admin_client.get(detail_url(shown)).content.decode() for shown in (idle, sending, dead)]

    shown = [re.search(r'<div class="readonly">([^<]*)</div>', page.split("Being sent")[1]) for page in pages]
    assert [field.group(1) if field else None for field in shown] == [
        "No",
        "Since 2026-11-25 16:59:00",
        "Since 2026-11-25 16:44:00, by a process that stopped: the next resend takes it over.",
    ]


def test_detail_shows_each_recipients_delivery_report(admin_client):
    shown = transcript("Sam", delivery_state=DeliveryState.BOUNCED)
    email = TranscriptEmail.objects.create(
        transcript=shown,
        audience=EmailAudience.STAFF,
        to=[STAFF, "owner@shop.example"],
        status=TranscriptStatus.SENT,
        ses_message_id="0000014644fe5ef6-9a483358",
    )
    DeliveryReport.objects.create(
        email=email,
        recipient=STAFF,
        state=DeliveryState.DELIVERED,
        detail="250 ok",
        reported_at=datetime(2026, 11, 25, 16, 50, tzinfo=UTC),
        sns_message_id="sns-1",
    )
    DeliveryReport.objects.create(
        email=email,
        recipient="owner@shop.example",
        state=DeliveryState.BOUNCED,
        bounce_type="Permanent",
        bounce_subtype="NoEmail",
        detail="smtp; 550 5.1.1 user unknown",
        reported_at=datetime(2026, 11, 25, 16, 51, tzinfo=UTC),
        sns_message_id="sns-2",
    )

    page = admin_client.get(detail_url(shown)).content.decode()

    assert (
        f"<div>{STAFF}: <strong>Delivered</strong> — 250 ok <small>(2026-11-25 16:50)</small></div>" in page
    )
    assert (
        "owner@shop.example: <strong>Bounced</strong> — Permanent / NoEmail / smtp; 550 5.1.1 user unknown"
        in page
    )


# --- actions and roles ---------------------------------------------------------------------


def test_operator_resends_through_the_service(fake_chatkit, ses, settings):
    settings.DEFAULT_FROM_EMAIL = "unverified@shop.example"
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("call me back")])
    Client().post(
        "/api/chatkit/transcript",
        {"threadId": thread.id},
        content_type="application/json",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    failed = Transcript.objects.get()
    assert failed.status == TranscriptStatus.FAILED
    ses.client.verify_email_identity(EmailAddress="unverified@shop.example")
    operator = staff_in("Transcript operators", "olivia")

    response = run_action(operator, "resend", [failed])

    assert "1 transcript(s) sent again." in response.content.decode()
    [mail] = ses.sent()
    assert "User: call me back" in mail.text
    failed.refresh_from_db()
    assert failed.status == TranscriptStatus.SENT
    assert failed.attempts == 2
    assert [email.status for email in failed.emails.all()] == ["failed", "sent"]


def test_a_failed_resend_is_reported_and_recorded(admin_client, ses, settings):
    settings.SES_TO_EMAIL = [STAFF]
    settings.DEFAULT_FROM_EMAIL = "unverified@shop.example"
    failing = transcript("Sam", status=TranscriptStatus.FAILED)

    response = run_action(admin_client, "resend", [failing])

    assert f"Not sent: #{failing.pk}: The email could not be sent again. Staff: MessageRejected" in (
        response.content.decode()
    )
    failing.refresh_from_db()
    assert failing.attempts == 1
    assert "MessageRejected" in failing.error


def test_reader_can_read_but_not_resend(ses, settings):
    settings.SES_TO_EMAIL = [STAFF]
    shown = transcript("Sam", status=TranscriptStatus.FAILED)
    reader = staff_in("Transcript readers", "rita")

    changelist = reader.get(CHANGELIST)
    assert changelist.status_code == 200
    assert names_listed(changelist) == ["Sam"]
    actions = [choice[0] for choice in changelist.context["action_form"].fields["action"].choices]
    assert "resend" not in actions
    assert "export_csv" in actions
    assert reader.get(detail_url(shown)).status_code == 200

    response = run_action(reader, "resend", [shown])

    assert response.status_code == 200
    assert ses.sent() == []
    shown.refresh_from_db()
    assert shown.attempts == 0
    assert shown.emails.count() == 0


def test_admin_is_for_staff_only(django_user_model):
    shown = transcript("Sam")
    visitor = django_user_model.objects.create_user(username="walter", password="not-used", is_staff=False)
    visitor.groups.add(Group.objects.get(name="Transcript operators"))
    client = Client()
    client.force_login(visitor)

    for url in (CHANGELIST, detail_url(shown)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    assert Client().get(CHANGELIST).status_code == 302


def test_too_many_for_one_request_are_left_to_the_command(admin_client, ses, settings):
    settings.SES_TO_EMAIL = [STAFF]
    many = [transcript(f"Visitor {n}", status=TranscriptStatus.FAILED) for n in range(21)]

    response = run_action(admin_client, "resend", many)

    assert "Select at most 20 transcripts, or use `manage.py resend_transcript`." in response.content.decode()
    assert ses.sent() == []


def test_export_as_csv(admin_client):
    first = transcript(
        "Sam Smith",
        phone="+44 20 7946 0000",
        details="Front brakes.\nTuesdays.",
        page_url="https://shop.example/quote",
        at=datetime(2026, 11, 24, 9, 0, tzinfo=UTC),
    )
    formula = transcript(
        '=HYPERLINK("https://evil.example")', email="", at=datetime(2026, 11, 25, tzinfo=UTC)
    )
    transcript("Not selected")

    response = run_action(admin_client, "export_csv", [first, formula])

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="transcripts-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["name"] for row in rows] == ['\'=HYPERLINK("https://evil.example")', "Sam Smith"]
    sam = rows[1]
    assert sam["id"] == str(first.pk)
    assert sam["created_at"] == "2026-11-24T09:00:00+00:00"
    assert sam["phone"] == "+44 20 7946 0000"
    assert sam["details"] == "Front brakes.\nTuesdays."
    assert sam["recipients"] == STAFF
    assert sam["status"] == "sent"
    assert sam["delivery_state"] == "unreported"
