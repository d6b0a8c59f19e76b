"""chatkit_site.settings, plus the variables it read, for tests/test_docs.py."""

from chatkit_site.env import variables_read
from chatkit_site.settings import *  # noqa: F403

VARIABLES_READ = sorted(variables_read)
