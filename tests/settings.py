"""The project's settings for the test run, with a fixed signing key.

Everything else comes from chatkit_site.settings as a deployment would get it; tests
change individual settings with pytest-django's `settings` fixture.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-signing-key-0123456789abcdefghijklmnopqrstuvwxyz")

from chatkit_site.settings import *  # noqa: F403
