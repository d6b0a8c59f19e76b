"""The visitor's email: Django's verdict on plain addresses, without Django's slow pattern."""

import pytest
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from chatkit_api.serializers import PlainEmailValidator
from tests.conftest import STAFF
from tests.test_transcript import send, server_client

plain_email = PlainEmailValidator()


def accepted(validator, address):
    try:
        validator(address)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    "address",
    [
        "zoe@visitor.example",
        "ZOE@Visitor.EXAMPLE",
        "zoe.o'brien+cars@mail.visitor.example",
        "x@a.co",
        "zoe@localhost",
        "zoe@bücher.example",
        "zoe@xn--bcher-kva.example",
        "zoe@пример.рф",
        "zoe@visitor.xn--p1ai",
        "zoe@visitor",
        "zoe@-visitor.example",
        "zoe@visitor-.example",
        "zoe@visitor..example",
        "zoe@visitor.example.",
        "zoe@vis_itor.example",
        "zoe@visitor.e",
        "zoe@visitor.123",
        "zoe@" + "v" * 64 + ".example",
        "zoe..x@visitor.example",
        ".zoe@visitor.example",
        "zoé@visitor.example",
        "@visitor.example",
        "zoe@",
        "zoe",
        "",
    ],
)
def test_plain_addresses_are_judged_as_djangos_validator_judges_them(address):
    assert accepted(plain_email, address) == accepted(validate_email, address)


@pytest.mark.parametrize("letter", ["\u0130", "\u0131", "\u017f", "\u212a"])
def test_a_name_with_a_letter_whose_case_folds_into_ascii_is_refused(letter):
    # Django takes them (its pattern ignores case); SES would refuse every mail to them.
    address = f"{letter}am@visitor.example"

    assert accepted(validate_email, address)
    assert not accepted(plain_email, address)


def test_a_domain_that_has_no_idna_form_is_refused():
    # Django's pattern takes it (60 letters a label); written into a mail it would be a
    # label far longer than 63 characters, which no mail can carry.
    address = "zoe@" + "ü" * 60 + ".example"

    assert accepted(validate_email, address)
    assert not accepted(plain_email, address)


@pytest.mark.django_db
def test_a_visitor_copy_to_an_internationalised_domain_goes_to_its_idna_form(fake_chatkit, ses, settings):
    settings.ALLOW_USER_RECAP = True
    thread = fake_chatkit.add_thread(user="visitor_abc", items=[])

    response = send(server_client(), {"threadId": thread.id, "mode": "recap", "email": "zoe@bücher.example"})

    assert response.status_code == 200
    assert [mail.destinations for mail in ses.sent()] == [[STAFF], ["zoe@xn--bcher-kva.example"]]
