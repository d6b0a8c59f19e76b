"""The project's settings for the test run, with a fixed signing key.

Everything else comes from chatkit_site.settings as a deployment would get it; tests
change individual settings with pytest-django's `settings` fixture.
"""

import os
import tempfile

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-signing-key-0123456789abcdefghijklmnopqrstuvwxyz")

from chatkit_site.settings import *  # noqa: F403
from chatkit_site.settings import DATABASES

# The test client speaks plain HTTP; tests/security/test_deploy_check.py checks the
# production value.
SECURE_SSL_REDIRECT = False

# Most tests speak managed ChatKit to the fake OpenAI API; the `self_hosted` fixture switches.
CHATKIT_MODE = "managed"

# Rate-limit counters in the test database, rolled back with each test whatever REDIS_URL
# says; the Redis tests choose Redis themselves.
REDIS_URL = ""

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file rather than SQLite's shared in-memory database, whose table locks fail at once
    # instead of waiting: the concurrency tests need each thread's own connection to wait
    # its turn as it would in a real deployment.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), f"chatkit-tests-{os.getpid()}.sqlite3")
    }
