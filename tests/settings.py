"""The project's settings for the test run, built from fixed values.

chatkit_site.settings reads its variables through chatkit_site.env; here that reads a fixed
environment instead of the process's, so that no developer's .env or shell (DJANGO_DEBUG,
a local SES endpoint, CHATKIT_MODE ...) changes what the tests run with. Only DATABASE_URL
passes: it chooses the database the suite runs on (SQLite when unset, PostgreSQL in CI).
Tests change individual settings with pytest-django's `settings` fixture.
"""

import os
import tempfile

from chatkit_site import env

env.source = {
    "DJANGO_SECRET_KEY": "tests-only-signing-key-0123456789abcdefghijklmnopqrstuvwxyz",
    "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
}
# boto3 and the openai SDK read their own variables from the process environment (an SES
# endpoint, a profile, an OpenAI base URL or organisation): the tests set what they need.
for name in [name for name in os.environ if name.startswith(("AWS_", "OPENAI_"))]:
    del os.environ[name]

from chatkit_site.settings import *  # noqa: E402, F403
from chatkit_site.settings import DATABASES, STORAGES  # noqa: E402

# The test client speaks plain HTTP; tests/security/test_deploy_check.py checks the
# production value.
SECURE_SSL_REDIRECT = False

# Attachments kept on disk go to a directory of the test run's own, never the project's media/.
# (Files are named by attachment ids, unique across the run's processes.)
STORAGES["chatkit_attachments"]["OPTIONS"]["location"] = os.path.join(
    tempfile.gettempdir(), "chatkit-tests-attachments"
)

# Most tests speak managed ChatKit to the fake OpenAI API; the `self_hosted` fixture switches.
CHATKIT_MODE = "managed"

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file rather than SQLite's shared in-memory database, whose table locks fail at once
    # instead of waiting: the concurrency tests need each thread's own connection to wait
    # its turn as it would in a real deployment.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"chatkit-tests-{os.getpid()}.sqlite3")
    }
