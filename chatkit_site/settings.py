"""Settings for the ChatKit backend, read from the environment.

Every variable is documented in README.md ("Settings") and listed in .env.example.
Defaults are safe for local development: SQLite, console email, no secrets needed
beyond what `make run` sets.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name)
    if not raw:
        return default
    if raw.lower() in {"1", "true", "yes", "on"}:
        return True
    if raw.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


def env_int(name: str, default: int) -> int:
    raw = env_str(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}.") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in env_str(name, default).split(",") if part.strip()]


# --- Django core ---------------------------------------------------------------

DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
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
    "rest_framework",
    # Swagger UI's files for the API docs page, served from here rather than from a CDN.
    "drf_spectacular_sidecar",
    "chatkit_api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Serves the pages' static files from the deployment itself (Lambda has no web server).
    "chatkit_site.static_files.LazyWhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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

# Set by the Lambda runtime in every function's environment.
RUNNING_ON_LAMBDA = bool(env_str("AWS_LAMBDA_FUNCTION_NAME"))
DATABASE_URL = env_str("DATABASE_URL")
if not DATABASE_URL and RUNNING_ON_LAMBDA:
    # Lambda's only writable disk is /tmp, private to one instance and wiped when the
    # instance goes: a transcript log there is lost and never shared.
    if not env_bool("ALLOW_SQLITE_ON_LAMBDA", False):
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

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Compressed copies are made at build time by collectstatic; no manifest, so pages still
    # render where collectstatic has not run (tests, `make run`).
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# The API sits behind API Gateway or a load balancer that sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    # The HTTP client under the openai SDK logs every request at INFO: one line per page
    # of a long thread says nothing an operator needs.
    "loggers": {"httpx2": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
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

OPENAI_API_KEY = env_str("OPENAI_API_KEY")
# Unset means the SDK's own default (https://api.openai.com/v1).
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL") or None
OPENAI_TIMEOUT_SECONDS = env_int("OPENAI_TIMEOUT_SECONDS", 15)
OPENAI_MAX_RETRIES = env_int("OPENAI_MAX_RETRIES", 2)
CHATKIT_WORKFLOW_ID = env_str("CHATKIT_WORKFLOW_ID")
CHATKIT_WORKFLOW_VERSION = env_str("CHATKIT_WORKFLOW_VERSION")

# --- Try-it page -----------------------------------------------------------------

# `GET /`: a page that embeds the ChatKit widget against this service, to see the whole
# flow in a browser. On for local development; a deployment serves it only when asked to,
# since it is a demonstration on the API's own domain, not something the site needs.
TRY_IT_PAGE_ENABLED = env_bool("TRY_IT_PAGE_ENABLED", DEBUG)
# ChatKit's web component, as sites load it; the page and its paste-able snippet use it.
CHATKIT_SCRIPT_URL = env_str(
    "CHATKIT_SCRIPT_URL", "https://cdn.platform.openai.com/deployments/chatkit/chatkit.js"
)

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
TRANSCRIPT_API_TOKEN = env_str("TRANSCRIPT_API_TOKEN")

SES_REGION = env_str("SES_REGION") or env_str("AWS_REGION") or "us-east-1"
SES_FROM_EMAIL = env_str("SES_FROM_EMAIL")
SES_TO_EMAIL = env_list("SES_TO_EMAIL")
SES_REPLY_TO = env_str("SES_REPLY_TO") or SES_FROM_EMAIL
ALLOW_USER_RECAP = env_bool("ALLOW_USER_RECAP", False)

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
# A transcript still `pending` this long after its last change was abandoned by a process
# that died (a Lambda invocation lasts 15 minutes at most); `resend_transcript --failed`
# then picks it up.
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
