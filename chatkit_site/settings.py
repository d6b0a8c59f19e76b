"""Settings for the ChatKit backend, read from the environment.

Every variable is documented in docs/settings.md and listed in .env.example.
Defaults are safe for local development: SQLite, console email, no secrets needed
beyond what `make run` sets.
"""

import ipaddress
import math
import re
import sys
from pathlib import Path
from typing import Any

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from chatkit_site import aws_secrets
from chatkit_site.env import env_bool, env_int, env_list, env_positive_int, env_rate, env_secret, env_str

BASE_DIR = Path(__file__).resolve().parent.parent


# --- Django core ---------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)

# Secrets given by ARN (`<NAME>_SECRET_ARN`) are read from Secrets Manager as the settings load,
# and read again once they are this many seconds old (chatkit_site.aws_secrets).
SECRETS_CACHE_SECONDS = env_positive_int("SECRETS_CACHE_SECONDS", 300)

SECRET_KEY = env_secret("DJANGO_SECRET_KEY", setting="SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. It signs the visitor cookie, so it must be a long "
            "random value shared by every instance. Set DJANGO_DEBUG=true for local development."
        )
    SECRET_KEY = "insecure-local-development-key-do-not-use-in-production"  # noqa: S105

# API Gateway and Lambda Function URL host names are AWS's own and only reach this
# deployment's API, so they are allowed by default; add the domain the API is served on.
ALLOWED_HOSTS = env_list(
    "DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else ".amazonaws.com,.on.aws"
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "corsheaders",
    "rest_framework",
    # Swagger UI's files for the API docs page, served from here rather than from a CDN.
    "drf_spectacular_sidecar",
    "chatkit_api",
]

MIDDLEWARE = [
    # First: the request's time budget runs from the moment it comes in.
    "chatkit_api.middleware.TimeBudgetMiddleware",
    # Before anything uses a secret.
    "chatkit_api.middleware.SecretsRefreshMiddleware",
    # Before anything reads the client's address.
    "chatkit_api.middleware.CloudFrontViewerMiddleware",
    # Next: every middleware after it may ask for the host.
    "chatkit_api.middleware.AllowedHostMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the pages' static files from the deployment itself (Lambda has no web server).
    "chatkit_site.static_files.LazyWhiteNoiseMiddleware",
    "chatkit_api.middleware.ApiResponseHeadersMiddleware",
    # Before anything that can answer, so that every reply (a 413 too) carries CORS headers.
    "corsheaders.middleware.CorsMiddleware",
    "chatkit_api.middleware.RequestBodyLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "chatkit_api.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "chatkit_site.urls"
WSGI_APPLICATION = "chatkit_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Time budget ------------------------------------------------------------------

# A request answered at once (a session, a transcript, the SES webhook, the admin) answers
# within this many seconds, failures included: API Gateway gives up after 29 s (REST API) or
# 30 s (HTTP API), and an answer after that reaches nobody. The calls to OpenAI and SES it
# makes get what is left of it (chatkit_api.time_budget, chatkit_api.mail).
REQUEST_TIME_BUDGET_SECONDS = env_positive_int("REQUEST_TIME_BUDGET_SECONDS", 25)
# The longest a request waits on the database or Redis at one time (to connect, for a free
# pooled connection, for a statement or a lock, for a reply): a fifth of the budget, so that
# one that does not answer is a 503 with time to spare.
STORE_WAIT_SECONDS = REQUEST_TIME_BUDGET_SECONDS / 5

# --- Database -------------------------------------------------------------------

# Set by the Lambda runtime in every function's environment.
RUNNING_ON_LAMBDA = bool(env_str("AWS_LAMBDA_FUNCTION_NAME"))
DATABASE_URL = env_str("DATABASE_URL")
# A secret in the form RDS manages for a database's user ({"username", "password"}, with
# "host", "port" and "dbname" when it has them): its user and password complete DATABASE_URL,
# which need not then hold them, and its host, port and name fill what DATABASE_URL leaves out.
DATABASE_SECRET_ARN = env_str("DATABASE_SECRET_ARN")
if DATABASE_SECRET_ARN and not DATABASE_URL:
    DATABASE_URL = "postgres://"
ALLOW_SQLITE_ON_LAMBDA = env_bool("ALLOW_SQLITE_ON_LAMBDA", False)
if not DATABASE_URL and RUNNING_ON_LAMBDA:
    # Lambda's only writable disk is /tmp, private to one instance and wiped when the
    # instance goes: a transcript log there is lost and never shared.
    if not ALLOW_SQLITE_ON_LAMBDA:
        raise ImproperlyConfigured(
            "DATABASE_URL is not set. On Lambda the transcript log must live in PostgreSQL "
            "(e.g. RDS or Aurora Serverless): SQLite would sit in /tmp, separate per instance and "
            "lost when the instance stops. Set ALLOW_SQLITE_ON_LAMBDA=true only for a throwaway trial."
        )
    DATABASE_URL = "sqlite:////tmp/db.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASE_SECRET_ARN:
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured(
            "DATABASE_SECRET_ARN completes a PostgreSQL DATABASE_URL (postgres://...)."
        )
    try:
        # The secret's user, password and perhaps host, port and name: keys of a DATABASES entry.
        credentials: Any = aws_secrets.database_credentials(DATABASE_SECRET_ARN, DATABASES["default"])
        DATABASES["default"].update(credentials)
    except aws_secrets.SecretUnavailable as exc:
        raise ImproperlyConfigured(f"DATABASE_SECRET_ARN: {exc}") from exc

# RDS Proxy endpoints (custom ones too): the proxy refuses every connection that carries
# server options ("RDS Proxy currently doesn't support command-line options").
rds_proxy_host = re.compile(r"\.proxy-[a-z0-9]+\.[a-z0-9-]+\.rds\.amazonaws\.com(\.cn)?$", re.IGNORECASE)


def _is_loopback(host: str) -> bool:
    """A host on this machine: empty or a path (a Unix socket), localhost, or a loopback address."""
    if not host or host.startswith("/") or host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 10)
database_options = DATABASES["default"].setdefault("OPTIONS", {})
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A server that does not answer fails the connection (libpq waits 2 s at the least) instead
    # of holding the request for psycopg's default of 130 s. What DATABASE_URL says wins.
    database_options.setdefault("connect_timeout", math.ceil(STORE_WAIT_SECONDS))
    # The connection (the password, the transcripts) is encrypted unless it stays on this
    # machine or this is local development; libpq's own default would send it in the clear to
    # a server without TLS. An sslmode in DATABASE_URL wins (verify-full checks the server's
    # certificate too).
    if not DEBUG and not _is_loopback(str(DATABASES["default"]["HOST"] or "")):
        database_options.setdefault("sslmode", "require")
    # `manage.py migrate`, a purge or an import runs as long as it needs; runserver serves
    # requests. (A Lambda `manage` event lifts it for its command: lambda_handler.)
    running_a_command = Path(sys.argv[0]).name == "manage.py" and sys.argv[1:2] != ["runserver"]
    if not rds_proxy_host.search(DATABASES["default"]["HOST"] or "") and not running_a_command:
        # The server cancels a statement (or a wait for a lock) that runs longer. Sent with the
        # connection, so it costs no round trip; any `options` of DATABASE_URL come after it,
        # and so win.
        statement_timeout = f"-c statement_timeout={round(STORE_WAIT_SECONDS * 1000)}"
        database_options["options"] = f"{statement_timeout} {database_options.get('options', '')}".strip()
    if DATABASE_POOL_SIZE > 0:
        # Under the ASGI server every request runs in a thread of its own, so a connection kept
        # by its thread (CONN_MAX_AGE) is never reused: without a pool each answer would open
        # one. The ChatKit store hands its connection back after each call
        # (chatkit_store.database).
        DATABASES["default"]["CONN_MAX_AGE"] = 0
        database_options["pool"] = {
            "min_size": 1,
            "max_size": DATABASE_POOL_SIZE,
            # How long a request waits for a free connection (or for a new one to be made)
            # before it fails.
            "timeout": STORE_WAIT_SECONDS,
        }
if DATABASE_SECRET_ARN:
    # PostgreSQL that reads the secret again when the database refuses its credentials.
    DATABASES["default"]["ENGINE"] = "chatkit_site.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Concurrent requests (runserver's threads) write rate-limit tickets at the same time.
    # A deferred transaction that reads and then writes can be refused at once with
    # "database is locked"; an immediate one waits for the write lock instead, this long.
    database_options["transaction_mode"] = "IMMEDIATE"
    database_options["timeout"] = STORE_WAIT_SECONDS

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies are made at build time by collectstatic; no manifest, so pages still
    # render where collectstatic has not run (tests, `make run`).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# Rate-limit counters must be seen by every instance (each Lambda instance has its own
# memory), so the cache is shared: a table in the database by default, which `migrate`
# creates, or Redis when there is one.
# Where rate-limit counters live: Redis when set, else a table in the database.
REDIS_URL = env_str("REDIS_URL")

# apig-wsgi (Lambda) and uvicorn (from the proxies in UVICORN_FORWARDED_ALLOW_IPS) take the
# scheme from X-Forwarded-Proto themselves. Django may trust the header only where a proxy
# always sets it: reached directly, a client could say "https" over plain HTTP.
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("TRUST_X_FORWARDED_PROTO", False) else None
)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

# --- HTTPS and security headers --------------------------------------------------

# Plain HTTP is redirected to HTTPS. API Gateway and Function URLs only speak HTTPS anyway;
# this covers a load balancer with an HTTP listener.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
# Browsers that saw the API over HTTPS refuse plain HTTP to it for this long (a year).
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
# Both apply below the API's own host name (api.example.com covers *.api.example.com).
# Preload only has an effect once the domain is submitted to the browsers' preload list.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
# Django's defaults, kept on purpose: nosniff, no framing, no cross-origin window handles,
# no Referer to other origins.
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_REFERRER_POLICY = "same-origin"

# Bodies are small JSON; anything bigger is refused with 413 before it is read. Every valid
# request fits, even with each character escaped as a \u surrogate pair (about 90 KB).
REQUEST_BODY_MAX_BYTES = env_int("REQUEST_BODY_MAX_BYTES", 128 * 1024)

# Pages on these origins (e.g. https://shop.example) may call the API from the browser
# with the visitor cookie. The API's own origin needs no entry. Credentials are allowed,
# and django-cors-headers only ever grants them to a listed origin.
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS")
# The origins browsers reach this service on when a proxy (CloudFront, the site's own) serves
# it under the site's domain, e.g. https://www.shop.example: the service then sees the
# origin's host name (execute-api, a Function URL), not the one the browser called, so a page
# on these counts as its own (the session, ChatKit and transcript Origin checks, the admin's
# CSRF check). Unset: the scheme and host of each request.
PUBLIC_ORIGINS = env_list("PUBLIC_ORIGINS")
CSRF_TRUSTED_ORIGINS = PUBLIC_ORIGINS
# The value of the X-Origin-Secret header the CloudFront distribution in front adds to every
# request it passes on. A request that carries it came through the distribution, so its
# CloudFront-Viewer-Address is the visitor's address (for rate limits and logs) rather than
# the edge's; without it, or with another value, that header is ignored.
CLOUDFRONT_ORIGIN_SECRET = env_secret("CLOUDFRONT_ORIGIN_SECRET")
CORS_ALLOW_CREDENTIALS = True
CORS_URLS_REGEX = r"^/api/chatkit(/|$)"
CORS_ALLOW_METHODS = ["POST", "PUT", "OPTIONS"]
CORS_ALLOW_HEADERS = ["accept", "authorization", "content-type", "idempotency-key", "x-page-url"]
# So that the widget's code can read when to try again after a 429.
CORS_EXPOSE_HEADERS = ["Retry-After"]

# `json`: one JSON object per line, with the Lambda request id (chatkit_site.logs), which is
# what CloudWatch needs; `text`: the message alone, readable at a terminal.
LOG_FORMAT = env_str("LOG_FORMAT", "json" if RUNNING_ON_LAMBDA else "text").lower()
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}.")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # An upstream error body or a backend's exception can quote a credential.
    "filters": {
        "redact_secrets": {"()": "chatkit_api.redaction.RedactSecretsFilter"},
        "ended_iterator_tasks": {"()": "chatkit_api.log_filters.EndedIteratorTaskFilter"},
    },
    "formatters": {
        "json": {"()": "chatkit_site.logs.JsonFormatter"},
        "text": {"format": "%(message)s"},
    },
    # Replaces whatever the Lambda runtime set up on the root logger.
    "handlers": {
        "console": {"class": "logging.StreamHandler", "filters": ["redact_secrets"], "formatter": LOG_FORMAT}
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        # The HTTP client under the openai SDK logs every request at INFO: one line per page
        # of a long thread says nothing an operator needs.
        "httpx2": {"level": "WARNING"},
        "httpx": {"level": "WARNING"},
        # At DEBUG botocore logs each signed request with its headers, the session token too.
        "botocore": {"level": "INFO"},
        "asyncio": {"filters": ["ended_iterator_tasks"]},
    },
}

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["chatkit_api.parsers.AnyContentTypeJSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "UNAUTHENTICATED_USER": None,
    "EXCEPTION_HANDLER": "chatkit_api.exceptions.api_exception_handler",
    # Read only when a schema is generated: drf-spectacular stays off the API's request path.
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI schema at /api/schema/ (see chatkit_api/schema.py).
SPECTACULAR_SETTINGS = {
    "TITLE": "ChatKit backend API",
    "DESCRIPTION": (
        "Hands the ChatKit widget a client secret for each visitor, and mails a thread's "
        "transcript with the visitor's lead details to staff."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "PREPROCESSING_HOOKS": ["chatkit_api.schema.strip_optional_slash"],
}

# --- OpenAI / ChatKit ----------------------------------------------------------

OPENAI_API_KEY = env_secret("OPENAI_API_KEY")
# Always given to the SDK, which would otherwise read OPENAI_BASE_URL itself and take an
# empty value for the URL.
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "https://api.openai.com/v1")
# Each attempt of a managed-mode call, and how many times a failed one is tried again; in a
# request, only while its time budget lasts.
OPENAI_TIMEOUT_SECONDS = env_int("OPENAI_TIMEOUT_SECONDS", 15)
OPENAI_MAX_RETRIES = env_int("OPENAI_MAX_RETRIES", 2)
CHATKIT_WORKFLOW_ID = env_str("CHATKIT_WORKFLOW_ID")
CHATKIT_WORKFLOW_VERSION = env_str("CHATKIT_WORKFLOW_VERSION")
# Limits OpenAI enforces on each client secret handed out: how long it lives, and how many
# requests per minute the widget may make with it. The API allows 1 to 600 seconds.
CHATKIT_SESSION_EXPIRES_SECONDS = env_int("CHATKIT_SESSION_EXPIRES_SECONDS", 600)
CHATKIT_SESSION_MAX_REQUESTS_PER_MINUTE = env_positive_int("CHATKIT_SESSION_MAX_REQUESTS_PER_MINUTE", 10)
if not 1 <= CHATKIT_SESSION_EXPIRES_SECONDS <= 600:
    raise ImproperlyConfigured("CHATKIT_SESSION_EXPIRES_SECONDS must be between 1 and 600.")

# --- Rate limits -----------------------------------------------------------------

# Counted per client address as the platform saw it (never X-Forwarded-For), per thread
# and per visitor address, in fixed windows aligned to the clock. Each is `<count>/<period>`.
RATE_LIMIT_SESSIONS_PER_IP = env_rate("RATE_LIMIT_SESSIONS_PER_IP", "30/hour")
RATE_LIMIT_TRANSCRIPTS_PER_IP = env_rate("RATE_LIMIT_TRANSCRIPTS_PER_IP", "10/hour")
RATE_LIMIT_TRANSCRIPTS_PER_THREAD = env_rate("RATE_LIMIT_TRANSCRIPTS_PER_THREAD", "5/hour")
RATE_LIMIT_VISITOR_COPIES_PER_ADDRESS = env_rate("RATE_LIMIT_VISITOR_COPIES_PER_ADDRESS", "3/hour")
# A visitor's copy goes to an address nobody confirmed: beside the per-address limit (the
# address normalised, so that name+1@ and n.ame@gmail.com are one inbox), copies are limited
# per visitor, per client address of visitors' browsers, and for the whole site.
RATE_LIMIT_VISITOR_COPIES_PER_VISITOR = env_rate("RATE_LIMIT_VISITOR_COPIES_PER_VISITOR", "5/day")
RATE_LIMIT_VISITOR_COPIES_PER_IP = env_rate("RATE_LIMIT_VISITOR_COPIES_PER_IP", "5/hour")
RATE_LIMIT_VISITOR_COPIES_SITE_WIDE = env_rate("RATE_LIMIT_VISITOR_COPIES_SITE_WIDE", "200/day")
# Self-hosted: every ChatKit request (a message, opening the history, loading a thread) from
# one address. A conversation makes a few per message, and each message costs model tokens.
RATE_LIMIT_CHATKIT_REQUESTS_PER_IP = env_rate("RATE_LIMIT_CHATKIT_REQUESTS_PER_IP", "300/hour")
# Signing in to the admin, right or wrong password alike: guessing is slow, and a staff
# member signs in a few times a day (`manage.py admin_sign_in_unlock` lifts a lock early).
RATE_LIMIT_ADMIN_SIGN_INS_PER_IP = env_rate("RATE_LIMIT_ADMIN_SIGN_INS_PER_IP", "20/hour")
RATE_LIMIT_ADMIN_SIGN_INS_PER_USER = env_rate("RATE_LIMIT_ADMIN_SIGN_INS_PER_USER", "10/hour")

# `managed`: the widget gets a client secret from /api/chatkit/session and talks to an Agent
# Builder workflow hosted by OpenAI. `self_hosted`: the widget talks to /api/chatkit, where
# this service runs the ChatKit server and the agent itself and keeps the threads.
# Unset: a deployment that names a workflow (the old handler's environment) stays managed;
# anything else is self-hosted, since Agent Builder shuts down on 2026-11-30.
CHATKIT_MODE = env_str("CHATKIT_MODE", "managed" if CHATKIT_WORKFLOW_ID else "self_hosted").lower()
if CHATKIT_MODE not in {"managed", "self_hosted"}:
    raise ImproperlyConfigured(f"CHATKIT_MODE must be managed or self_hosted, not {CHATKIT_MODE!r}.")
# Self-hosted: the Agents SDK agent that answers, as "module:attribute" (an Agent, or a function
# without arguments that returns one), e.g. the module Agent Builder's code export produced.
CHATKIT_AGENT = env_str("CHATKIT_AGENT", "chatkit_api.agent:default_agent")
# The shipped default agent: its model (empty: the Agents SDK's default) and instructions,
# given inline or as a file (the file wins when both are set).
CHATKIT_AGENT_MODEL = env_str("CHATKIT_AGENT_MODEL")
CHATKIT_AGENT_INSTRUCTIONS = env_str("CHATKIT_AGENT_INSTRUCTIONS")
CHATKIT_AGENT_INSTRUCTIONS_FILE = env_str("CHATKIT_AGENT_INSTRUCTIONS_FILE")
# A small model (e.g. gpt-4.1-nano) that titles a thread in 3 to 6 words from the visitor's
# first message, beside the first answer; empty keeps the first message, cut short, as title.
CHATKIT_TITLE_MODEL = env_str("CHATKIT_TITLE_MODEL")
# Seconds a whole answer may take, model calls, retries, tools and handoffs together; past it
# the answer stops with an error event (OPENAI_TIMEOUT_SECONDS is for the quick API calls of
# managed mode).
CHATKIT_AGENT_TIMEOUT_SECONDS = env_positive_int("CHATKIT_AGENT_TIMEOUT_SECONDS", 60)
# While the agent is silent the stream sends a comment this often, so that proxies keep the
# connection open and a visitor who left is noticed.
CHATKIT_STREAM_HEARTBEAT_SECONDS = env_positive_int("CHATKIT_STREAM_HEARTBEAT_SECONDS", 5)
# Traces of agent runs (which contain the conversation) go to OpenAI's Traces dashboard only
# when this is on.
CHATKIT_AGENT_TRACING = env_bool("CHATKIT_AGENT_TRACING", False)
# Stream replies as server-sent events while the agent writes them. Behind a proxy that
# buffers responses turn this off; on Lambda (apig-wsgi) replies are always sent whole.
CHATKIT_STREAM_RESPONSES = env_bool("CHATKIT_STREAM_RESPONSES", True)

# --- Self-hosted attachments -------------------------------------------------------

# Files visitors attach, checked when the upload URL is asked for and again when a message
# uses them. Images reach the model as images, anything else as a file (PDF by default).
CHATKIT_ATTACHMENTS_MAX_BYTES = env_positive_int("CHATKIT_ATTACHMENTS_MAX_BYTES", 10 * 1024 * 1024)
CHATKIT_ATTACHMENTS_MAX_PER_MESSAGE = env_int("CHATKIT_ATTACHMENTS_MAX_PER_MESSAGE", 4)
CHATKIT_ATTACHMENTS_MIME_TYPES = [
    mime_type.lower()
    for mime_type in env_list(
        "CHATKIT_ATTACHMENTS_MIME_TYPES", "image/png,image/jpeg,image/gif,image/webp,application/pdf"
    )
]
# Upload URLs, image previews and the admin's links to a file last this long.
CHATKIT_ATTACHMENTS_URL_SECONDS = env_positive_int("CHATKIT_ATTACHMENTS_URL_SECONDS", 600)
# The S3 bucket the browser uploads to directly (presigned URLs); unset, files are kept on
# the local disk under CHATKIT_ATTACHMENTS_DIR and uploaded through this service. Lambda's
# disk is read-only and per instance: there attachments need the bucket, or are refused.
CHATKIT_ATTACHMENTS_BUCKET = env_str("CHATKIT_ATTACHMENTS_BUCKET")
CHATKIT_ATTACHMENTS_DIR = env_str("CHATKIT_ATTACHMENTS_DIR") or str(BASE_DIR / "media")
if CHATKIT_ATTACHMENTS_MAX_PER_MESSAGE < 0:
    raise ImproperlyConfigured("CHATKIT_ATTACHMENTS_MAX_PER_MESSAGE must be 0 (no attachments) or more.")
if CHATKIT_ATTACHMENTS_BUCKET:
    from botocore.config import Config

    STORAGES["chatkit_attachments"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": CHATKIT_ATTACHMENTS_BUCKET,
            "region_name": env_str("AWS_REGION") or None,
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": True,
            "querystring_expire": CHATKIT_ATTACHMENTS_URL_SECONDS,
            # S3 is asked within a request's time budget: each try has half of the database's
            # wait (a tenth of the budget) to connect and as much to answer, and two tries
            # together take at most two fifths; a request asks only while that much is left.
            "client_config": Config(
                signature_version="s3v4",
                # Links on the bucket's regional host: on the global one S3 answers a bucket
                # outside us-east-1 with a redirect for its first hours, which a browser's CORS
                # preflight does not follow.
                s3={"addressing_style": "virtual"},
                connect_timeout=STORE_WAIT_SECONDS / 2,
                read_timeout=STORE_WAIT_SECONDS / 2,
                retries={"total_max_attempts": 2, "mode": "standard"},
            ),
        },
    }
else:
    STORAGES["chatkit_attachments"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": CHATKIT_ATTACHMENTS_DIR, "base_url": None},
    }

# --- Try-it page -----------------------------------------------------------------

# `GET /`: a page that embeds the ChatKit widget against this service, to see the whole
# flow in a browser. On for local development; a deployment serves it only when asked to,
# since it is a demonstration on the API's own domain, not something the site needs.
TRY_IT_PAGE_ENABLED = env_bool("TRY_IT_PAGE_ENABLED", DEBUG)
# ChatKit's web component, as sites load it; the page and its paste-able snippet use it.
CHATKIT_SCRIPT_URL = env_str(
    "CHATKIT_SCRIPT_URL", "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js"
)

# Self-hosted: the domain key OpenAI's domain allowlist gives the site's domain, which the
# widget's `api.domainKey` carries; filled into the try-it page's widget and its snippet. On
# localhost any value works, and the page uses a placeholder when this is unset.
CHATKIT_DOMAIN_KEY = env_str("CHATKIT_DOMAIN_KEY")

# --- Visitor identity ----------------------------------------------------------

VISITOR_COOKIE_NAME = env_str("VISITOR_COOKIE_NAME", "chatkit_visitor")
VISITOR_COOKIE_MAX_AGE_DAYS = env_int("VISITOR_COOKIE_MAX_AGE_DAYS", 90)
VISITOR_COOKIE_SECURE = env_bool("VISITOR_COOKIE_SECURE", not DEBUG)
VISITOR_COOKIE_SAMESITE = env_str("VISITOR_COOKIE_SAMESITE", "Lax").capitalize()
VISITOR_COOKIE_DOMAIN = env_str("VISITOR_COOKIE_DOMAIN") or None
if VISITOR_COOKIE_SAMESITE not in {"Lax", "Strict", "None"}:
    raise ImproperlyConfigured("VISITOR_COOKIE_SAMESITE must be Lax, Strict or None.")
if VISITOR_COOKIE_SAMESITE == "None" and not VISITOR_COOKIE_SECURE:
    raise ImproperlyConfigured(
        "VISITOR_COOKIE_SAMESITE=None needs VISITOR_COOKIE_SECURE=true: browsers drop "
        "SameSite=None cookies that are not Secure."
    )

# --- Transcripts and email -----------------------------------------------------

# Server-side callers (a workflow tool, another backend) authenticate with this bearer
# token. Unset disables token access; visitors can still mail their own threads.
TRANSCRIPT_API_TOKEN = env_secret("TRANSCRIPT_API_TOKEN")

SES_REGION = env_str("SES_REGION") or env_str("AWS_REGION") or "us-east-1"
SES_FROM_EMAIL = env_str("SES_FROM_EMAIL")
SES_TO_EMAIL = env_list("SES_TO_EMAIL")
SES_REPLY_TO = env_str("SES_REPLY_TO") or SES_FROM_EMAIL
ALLOW_USER_RECAP = env_bool("ALLOW_USER_RECAP", False)
# The subject of the visitor's copy: fixed, so that no text a visitor typed reaches a header of
# mail that carries the site's name to an address nobody confirmed.
VISITOR_COPY_SUBJECT = env_str("VISITOR_COPY_SUBJECT") or "A copy of your conversation with us"

# A retried transcript request must not mail the transcript twice. An Idempotency-Key is
# remembered this long; without one, an identical request within the window below is the
# same request.
IDEMPOTENCY_KEY_HOURS = env_positive_int("IDEMPOTENCY_KEY_HOURS", 24)
TRANSCRIPT_DUPLICATE_WINDOW_SECONDS = env_positive_int("TRANSCRIPT_DUPLICATE_WINDOW_SECONDS", 300)
# How long a request holds its key (others get 409); a request still holding it after this
# is taken to have died. Keep it above the longest a request can run (the function timeout).
IDEMPOTENCY_LOCK_SECONDS = env_positive_int("IDEMPOTENCY_LOCK_SECONDS", 120)

DEFAULT_FROM_EMAIL = SES_FROM_EMAIL or "chatkit@localhost"
if SES_FROM_EMAIL:
    EMAIL_BACKEND = "django_ses.SESBackend"
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
AWS_SES_REGION_NAME = SES_REGION
# The SES v2 API takes the raw message as JSON; v1 form-encodes it, which for a long
# transcript costs more time than everything else in the send.
USE_SES_V2 = True
# LocalStack or a moto server: the standard AWS variables. boto3 alone would only read
# AWS_ENDPOINT_URL_SESV2 for the v2 API, so the SES one is honoured here too. None lets
# boto3 pick AWS's own endpoint for the region.
AWS_SES_REGION_ENDPOINT_URL = (
    env_str("AWS_ENDPOINT_URL_SESV2")
    or env_str("AWS_ENDPOINT_URL_SES")
    or env_str("AWS_ENDPOINT_URL")
    or None
)
# SES tags each message with this configuration set, whose event destination reports
# deliveries, bounces and complaints through SNS.
AWS_SES_CONFIGURATION_SET = env_str("SES_CONFIGURATION_SET") or None
# django-ses's throttle keeps its counters in process memory, which means nothing across
# Lambda instances, and costs a GetSendQuota call per cold start.
AWS_SES_AUTO_THROTTLE = None

# A transcript is deleted with its messages and delivery reports this many days after it
# was recorded, by `manage.py purge_transcripts` (run it daily).
TRANSCRIPT_RETENTION_DAYS = env_int("TRANSCRIPT_RETENTION_DAYS", 365)
# A self-hosted thread nobody has written in for this many days is deleted with its items and
# attachments by `manage.py purge_threads` (run it daily, with purge_transcripts).
CHATKIT_THREAD_RETENTION_DAYS = env_positive_int("CHATKIT_THREAD_RETENTION_DAYS", 365)
# A send of a transcript still unfinished this long after it began was abandoned by a process
# that died (a Lambda invocation lasts 15 minutes at most); until then nothing else sends the
# transcript, after it `resend_transcript --failed` (or a retry, or a resend) takes it over.
TRANSCRIPT_PENDING_TIMEOUT_MINUTES = env_int("TRANSCRIPT_PENDING_TIMEOUT_MINUTES", 15)
if TRANSCRIPT_RETENTION_DAYS < 1 or TRANSCRIPT_PENDING_TIMEOUT_MINUTES < 1:
    raise ImproperlyConfigured(
        "TRANSCRIPT_RETENTION_DAYS and TRANSCRIPT_PENDING_TIMEOUT_MINUTES must be at least 1."
    )

# --- SES delivery tracking (SNS) -------------------------------------------------

# SES publishes deliveries, bounces and complaints to these SNS topics; notifications from
# any other topic are rejected, and none is accepted while the list is empty. The names are
# django-ses's settings, which its webhook reads too.
AWS_SNS_EVENT_TRUSTED_TOPIC_ARNS = env_list("SES_NOTIFICATION_TOPIC_ARNS")
# SNS signing certificates are served only from sns.<region>.amazonaws.com; django-ses's
# default also trusts any host under amazon.com.
AWS_SNS_EVENT_CERT_TRUSTED_DOMAINS = ["amazonaws.com"]
