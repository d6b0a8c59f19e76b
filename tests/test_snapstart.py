"""The SnapStart hooks, called the way the Lambda runtime calls them."""

import random
import sys

import pytest
from django.db import connection
from snapshot_restore_py import get_after_restore, get_before_snapshot

import chatkit_site.lambda_handler  # noqa: F401 - registers the hooks, as on Lambda
from chatkit_api import mail, openai_gateway
from chatkit_site import snapstart


def assert_closed(database_connection):
    # Django keeps an in-memory SQLite database open on purpose (closing would destroy
    # it), so the check only bites on a real server; CI runs the suite on PostgreSQL too.
    if not (database_connection.vendor == "sqlite" and database_connection.is_in_memory_db()):
        assert database_connection.connection is None


def run(registry):
    for hook, args, kwargs in registry:
        hook(*args, **kwargs)


def test_handler_import_registers_both_hooks():
    assert snapstart.before_snapshot in [hook for hook, _, _ in get_before_snapshot()]
    assert snapstart.after_restore in [hook for hook, _, _ in get_after_restore()]


@pytest.mark.django_db(transaction=True)
def test_before_snapshot_builds_what_the_first_calls_need_and_closes_the_database(fake_chatkit, ses):
    connection.ensure_connection()

    run(get_before_snapshot())

    assert "chatkit_api.apis" in sys.modules
    assert "django_ses" in sys.modules
    assert openai_gateway._build_client.cache_info().currsize == 1
    assert mail._open_connection.cache_info().currsize == 1
    assert_closed(connection)


@pytest.mark.django_db(transaction=True)
def test_after_restore_renews_random_state_and_database_connections():
    random.seed(1234)
    snapshot_sequence = [random.random() for _ in range(3)]
    random.seed(1234)
    connection.ensure_connection()

    run(get_after_restore())

    assert [random.random() for _ in range(3)] != snapshot_sequence
    assert_closed(connection)
