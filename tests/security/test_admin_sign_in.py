"""Signing in to the admin: attempts limited per username and per client address."""

import pytest
from django.core.management import call_command
from django.test import Client

pytestmark = pytest.mark.django_db

SIGN_IN = "/admin/login/"


@pytest.fixture
def alice(django_user_model, settings):
    settings.RATE_LIMIT_ADMIN_SIGN_INS_PER_USER = (3, 3600)
    settings.RATE_LIMIT_ADMIN_SIGN_INS_PER_IP = (5, 3600)
    return django_user_model.objects.create_user("alice", password="right-password-1", is_staff=True)


def sign_in(username, password, address="198.51.100.7"):
    client = Client(REMOTE_ADDR=address)
    response = client.post(SIGN_IN, {"username": username, "password": password, "next": "/admin/"})
    return response, client


def signed_in(response) -> bool:
    return response.status_code == 302 and response["Location"] == "/admin/"


def test_a_staff_member_signs_in(alice):
    response, client = sign_in("alice", "right-password-1")

    assert signed_in(response)
    assert client.get("/admin/").status_code == 200


def test_after_the_limit_even_the_right_password_is_refused_and_says_why(alice):
    for guess in ("guess-1", "guess-2", "guess-3"):
        assert not signed_in(sign_in("alice", guess)[0])

    response, client = sign_in("Alice", "right-password-1", address="203.0.113.9")

    assert response.status_code == 200
    assert "Too many requests: at most 3 admin sign-in attempts for one username per hour." in (
        response.content.decode()
    )
    assert client.get("/admin/").status_code == 302


def test_one_address_guessing_many_usernames_is_refused(alice):
    for name in ("bob", "carol", "dave", "erin", "frank"):
        assert not signed_in(sign_in(name, "guess")[0])

    response, _ = sign_in("alice", "right-password-1")

    assert response.status_code == 200
    assert "admin sign-in attempts from one address" in response.content.decode()
    assert signed_in(sign_in("alice", "right-password-1", address="203.0.113.9")[0])


def test_the_unlock_command_lets_the_staff_member_in_again(alice, capsys):
    for guess in ("guess-1", "guess-2", "guess-3"):
        sign_in("alice", guess)
    assert not signed_in(sign_in("alice", "right-password-1", address="203.0.113.9")[0])

    call_command("admin_sign_in_unlock", "ALICE")

    assert "Sign-in attempts for 'ALICE' forgotten." in capsys.readouterr().out
    assert signed_in(sign_in("alice", "right-password-1", address="203.0.113.9")[0])
