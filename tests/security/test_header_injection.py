"""Threat: mail header injection, turning the transcript mail into a spam relay.

Every request field is tried with CR/LF, NUL, Unicode line separators and other controls,
through both kinds of caller; whatever the reply, the recipients moto received are exactly
the intended ones and no header was added. The mail layer refuses such headers on its own,
for transcripts stored before they could be checked.
"""

import pytest

from chatkit_api.exceptions import EmailSendFailed
from chatkit_api.mail import MailError, OutgoingEmail, email_send
from chatkit_api.models import Transcript, TranscriptStatus
from chatkit_api.services import transcript_resend
from tests.conftest import STAFF
from tests.fake_chatkit import user_message
from tests.test_transcript import send, server_client, visitor_with_thread

pytestmark = pytest.mark.django_db

VISITOR = "zoe@visitor.example"
VICTIM = "victim@evil.example"
SEPARATORS = {
    "crlf": "\r\n",
    "lf": "\n",
    "cr": "\r",
    "nul": "\x00",
    "vt": "\x0b",
    "ff": "\x0c",
    "fs": "\x1c",
    "rs": "\x1e",
    "nel": "\x85",
    "line-separator": "\u2028",
    "paragraph-separator": "\u2029",
}
FIELDS = ["threadId", "name", "email", "phone", "vehicle", "details", "mode", "pageUrl"]
# Inside the value, as a line break followed by headers that would add recipients.
INJECTED = "{separator}Bcc: {victim}{separator}Cc: {victim}{separator}To: {victim}"


def injected_body(thread_id, field, separator):
    body = {
        "threadId": thread_id,
        "name": "Zoë",
        "email": VISITOR,
        "phone": "+44 20 7946 0000",
        "vehicle": "Octavia",
        "details": "Brakes",
        "mode": "recap",
        "pageUrl": "https://shop.example/quote",
    }
    body[field] += INJECTED.format(separator=separator, victim=VICTIM)
    return body


def assert_only_intended_recipients(ses, response, *, visitor_copy):
    """Refused outright, or sent to exactly staff (and the visitor), headers untouched."""
    mails = ses.sent()
    if response.status_code == 400:
        assert mails == []
        assert Transcript.objects.count() == 0
        return
    assert response.status_code == 200, response.json()
    expected = [[STAFF], [VISITOR]] if visitor_copy else [[STAFF]]
    assert [mail.destinations for mail in mails] == expected
    for mail, [recipient] in zip(mails, expected, strict=True):
        assert mail.message["To"] == recipient
        assert mail.message["Cc"] is None
        assert mail.message["Bcc"] is None
        assert mail.message.get_all("To") == [recipient]
        assert VICTIM not in str(mail.message["Subject"])
        assert VICTIM not in str(mail.message["Reply-To"])
    assert mails[0].message["Reply-To"] == VISITOR


@pytest.mark.parametrize("separator", SEPARATORS.values(), ids=SEPARATORS.keys())
@pytest.mark.parametrize("field", FIELDS)
def test_a_server_caller_cannot_inject_headers(fake_chatkit, ses, settings, field, separator):
    settings.ALLOW_USER_RECAP = True
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[user_message("hi")])

    response = send(server_client(), injected_body(thread.id, field, separator))

    assert_only_intended_recipients(ses, response, visitor_copy=True)
    # Only the multi-line body field may carry line breaks, and only into the body.
    if field == "details" and separator in "\r\n":
        assert response.status_code == 200
    elif field != "details":
        assert response.status_code == 400
        assert field in response.json()["fields"]


@pytest.mark.parametrize("separator", ["\r\n", "\x00", "\u2028"], ids=["crlf", "nul", "line-separator"])
@pytest.mark.parametrize("field", FIELDS)
def test_a_visitor_cannot_inject_headers(fake_chatkit, ses, settings, field, separator):
    settings.ALLOW_USER_RECAP = True
    browser, thread = visitor_with_thread(fake_chatkit, [user_message("hi")])

    response = send(browser, injected_body(thread.id, field, separator))

    assert_only_intended_recipients(ses, response, visitor_copy=True)


@pytest.mark.parametrize(
    "email",
    [
        f'"{VICTIM},"@visitor.example',
        f'"{VICTIM}"@visitor.example',
        '"zoe\x0bx"@visitor.example',
        '"zoe\x01x"@visitor.example',
        f"{VISITOR}, {VICTIM}",
        f"{VISITOR};{VICTIM}",
        f"Zoe <{VISITOR}>",
        f"{VISITOR}> <{VICTIM}",
        "zoe@[127.0.0.1]",
        "zoe\\@visitor.example",
        "zoe @visitor.example",
        f"{VISITOR}\u2028Bcc: {VICTIM}",
    ],
)
def test_an_address_that_parsers_could_read_as_more_is_refused(fake_chatkit, ses, settings, email):
    settings.ALLOW_USER_RECAP = True
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])

    response = send(server_client(), {"threadId": thread.id, "mode": "recap", "email": email})

    assert response.status_code == 400
    assert "email" in response.json()["fields"]
    assert ses.sent() == []


ENCODED_WORD = f"=?utf-8?q?Zo=C3=AB=0D=0ABcc:_{VICTIM}?="


@pytest.mark.parametrize("field", FIELDS)
def test_an_encoded_word_that_decodes_to_more_lines_is_refused(fake_chatkit, ses, settings, field):
    settings.ALLOW_USER_RECAP = True
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    value = f"{ENCODED_WORD}@visitor.example" if field == "email" else ENCODED_WORD

    response = send(server_client(), {"threadId": thread.id, "mode": "recap", field: value})

    if field == "details":
        # The body is not a header: the text is shown as written.
        assert response.status_code == 200
        assert ENCODED_WORD in ses.sent()[0].text
        return
    assert response.status_code == 400
    assert field in response.json()["fields"]
    assert ses.sent() == []


def test_unusual_but_plain_addresses_are_accepted(fake_chatkit, ses, settings):
    settings.ALLOW_USER_RECAP = True
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])
    address = "zoe.o'brien+cars@mail.visitor.example"

    response = send(server_client(), {"threadId": thread.id, "mode": "recap", "email": address})

    assert response.status_code == 200
    assert [mail.destinations for mail in ses.sent()] == [[STAFF], [address]]


def test_a_tab_in_a_name_reaches_the_subject_as_plain_whitespace(fake_chatkit, ses):
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])

    response = send(server_client(), {"threadId": thread.id, "name": f"Zoë\tBcc: {VICTIM}"})

    assert response.status_code == 200
    [mail] = ses.sent()
    assert mail.destinations == [STAFF]
    assert mail.message["Bcc"] is None


# --- the mail layer on its own ----------------------------------------------------------


def outgoing(**changes):
    fields = {
        "subject": "[Chat] Zoë - quote",
        "text": "hi",
        "html": "<p>hi</p>",
        "to": [STAFF],
        "reply_to": VISITOR,
    }
    return OutgoingEmail(**{**fields, **changes})


@pytest.mark.parametrize("separator", SEPARATORS.values(), ids=SEPARATORS.keys())
@pytest.mark.parametrize(
    "header",
    [
        lambda bad: {"subject": f"[Chat] Zoë{bad} - quote"},
        lambda bad: {"reply_to": f"{VISITOR}{bad}"},
        lambda bad: {"to": [f"{STAFF}{bad}"]},
    ],
    ids=["subject", "reply-to", "to"],
)
def test_the_mail_layer_refuses_a_header_with_a_line_break(ses, header, separator):
    bad = INJECTED.format(separator=separator, victim=VICTIM)

    with pytest.raises(MailError, match="line break, control character or encoded word"):
        email_send(outgoing(**header(bad)))

    assert ses.sent() == []


def test_the_mail_layer_refuses_an_encoded_word_in_the_subject(ses):
    with pytest.raises(MailError, match="encoded word"):
        email_send(outgoing(subject="[Chat] =?utf-8?b?WgpCY2M6IHZpY3RpbUBldmlsLmV4YW1wbGU=?= - quote"))

    assert ses.sent() == []


def test_a_stored_transcript_with_an_injected_name_is_not_resent(fake_chatkit, ses):
    # A row from before input was checked, or written by hand: the subject comes from it.
    transcript = Transcript.objects.create(
        thread_id="cthr_old",
        requested_by="server",
        name=f"Zoë\r\nBcc: {VICTIM}",
        subject=f"[Chat] Zoë\r\nBcc: {VICTIM} - quote",
        body_text="Mode: quote",
        body_html="<p>Mode: quote</p>",
        status=TranscriptStatus.FAILED,
    )

    with pytest.raises(EmailSendFailed):
        transcript_resend(transcript=transcript)

    assert ses.sent() == []
    transcript.refresh_from_db()
    assert transcript.status == TranscriptStatus.FAILED
    assert "line break, control character or encoded word" in transcript.error
