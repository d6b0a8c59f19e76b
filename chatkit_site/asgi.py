"""The ASGI application, for servers that stream: `make serve` (uvicorn), a container, and on
Lambda the streaming function behind AWS Lambda Web Adapter. The ChatKit endpoint runs on the
server's event loop; everything else is the same Django as under WSGI."""

import os

from django.core.asgi import get_asgi_application

from chatkit_site.local_env import load_local_env

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatkit_site.settings")
load_local_env()
django_application = get_asgi_application()

# Imported once Django is set up: the middleware module uses DRF, which reads the settings.
from chatkit_api.middleware import AsgiRequestBodyLimit  # noqa: E402

application = AsgiRequestBodyLimit(django_application)
