"""Secrets Manager: the secrets the settings name by ARN, read at run time and kept in memory.

On AWS the function's environment holds only ARNs (`OPENAI_API_KEY_SECRET_ARN`,
`DATABASE_SECRET_ARN`, ...), never a secret's value, which anyone allowed to read the
function's configuration could see. Each secret is read with GetSecretValue when the settings
load (a Lambda instance's init, before the first request) and kept. Rotation is picked up
without a deploy:

- a value older than SECRETS_CACHE_SECONDS is read again at the start of the next request
  (chatkit_api.middleware.SecretsRefreshMiddleware), and the settings that came from it change;
- the database's credentials are read again at once when the database refuses them
  (chatkit_site.postgresql), since RDS changes the password the moment it rotates it.

A secret whose value is a JSON object gives each setting its own key, so that one secret can
hold several (`{"OPENAI_API_KEY": "sk-...", "DJANGO_SECRET_KEY": "..."}`); any other value is
the setting itself.
"""

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# Each GetSecretValue: the connection, the reply, and one more attempt after a failure. At
# init there is no request to wait; in a request the refresh comes first, with the whole time
# budget ahead of it.
CONNECT_TIMEOUT_SECONDS = 2
READ_TIMEOUT_SECONDS = 3
MAX_ATTEMPTS = 2

# A refresh the database asked for because it refused the credentials is made at most this
# often, so that a database that is down does not cost a read of the secret per request.
FORCED_REFRESH_INTERVAL_SECONDS = 30


class SecretUnavailable(Exception):
    """A secret could not be read: named by its ARN, with what Secrets Manager said."""


@dataclass
class _Cached:
    value: str
    # The wall clock: an instance restored from a SnapStart snapshot resumes it, where its
    # monotonic clock may start again from anywhere.
    read_at: float


@dataclass
class _Store:
    cached: dict[str, _Cached] = field(default_factory=dict)
    # Setting name -> (ARN, the key a JSON secret holds it under).
    bound: dict[str, tuple[str, str]] = field(default_factory=dict)
    clients: dict[str, Any] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_store = _Store()


def _region_of(arn: str) -> str:
    parts = arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "secretsmanager" or not parts[3]:
        raise SecretUnavailable(f"{arn!r} is not the ARN of a Secrets Manager secret.")
    return parts[3]


def _client(region: str) -> Any:
    client = _store.clients.get(region)
    if client is None:
        # Imported here: a deployment without secret ARNs never pays for boto3 at start-up.
        import boto3
        from botocore.config import Config

        client = _store.clients[region] = boto3.client(
            "secretsmanager",
            region_name=region,
            config=Config(
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                read_timeout=READ_TIMEOUT_SECONDS,
                retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
            ),
        )
    return client


def _read(arn: str) -> str:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        reply = _client(_region_of(arn)).get_secret_value(SecretId=arn)
    except (BotoCoreError, ClientError) as exc:
        raise SecretUnavailable(f"Secrets Manager did not give {arn}: {exc}") from exc
    if "SecretString" not in reply:
        raise SecretUnavailable(f"{arn} holds binary data; the settings need text.")
    value = reply["SecretString"]
    _store.cached[arn] = _Cached(value=value, read_at=time.time())
    return value


def secret_string(arn: str) -> str:
    """The secret's value, from memory when it was read before."""
    cached = _store.cached.get(arn)
    return cached.value if cached is not None else _read(arn)


def secret_json(arn: str) -> dict[str, Any]:
    """A secret that holds a JSON object (e.g. the one RDS manages for a database's user)."""
    try:
        value = json.loads(secret_string(arn))
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise SecretUnavailable(f"{arn} does not hold a JSON object.")
    return value


def database_credentials(arn: str, database: Mapping[str, object]) -> dict[str, Any]:
    """What the database secret gives a Django DATABASES entry: its user and password, and
    the host, port and name it holds where `database` has none."""
    secret = secret_json(arn)
    if not secret.get("username") or not secret.get("password"):
        raise SecretUnavailable(f"{arn} holds no username and password.")
    given = {"USER": secret["username"], "PASSWORD": secret["password"]}
    for setting, key in (("HOST", "host"), ("PORT", "port"), ("NAME", "dbname")):
        if not database.get(setting) and secret.get(key):
            given[setting] = secret[key]
    return given


def secret_refresh(arn: str) -> bool:
    """Read the secret again now, unless that was done in the last
    FORCED_REFRESH_INTERVAL_SECONDS; whether its value changed."""
    cached = _store.cached.get(arn)
    if cached is not None and time.time() - cached.read_at < FORCED_REFRESH_INTERVAL_SECONDS:
        return False
    before = cached.value if cached is not None else None
    return _read(arn) != before


def _field(value: str, key: str) -> str:
    try:
        parsed = json.loads(value)
    except ValueError:
        return value.strip()
    if isinstance(parsed, dict):
        return str(parsed.get(key) or "").strip()
    return value.strip()


def secret_field(arn: str, key: str) -> str:
    """The secret's value as it is now, not from memory (a value just put there), or its
    `key` when it holds a JSON object; empty when that object has no such key."""
    return _field(_read(arn), key)


def setting_from_secret(setting: str, arn: str, key: str) -> str:
    """The value of `setting` from the secret `arn` (its `key` when it holds a JSON object),
    remembered so that a refresh updates the setting."""
    _store.bound[setting] = (arn, key)
    return _field(secret_string(arn), key)


def settings_stale(max_age: float) -> bool:
    """Whether a secret a setting came from is older than `max_age` seconds."""
    now = time.time()
    return any(
        now - _store.cached[arn].read_at >= max_age
        for arn, _ in _store.bound.values()
        if arn in _store.cached
    )


def settings_refresh(max_age: float) -> None:
    """Read again the secrets older than `max_age` seconds, and give Django's settings the
    values that changed. A secret that cannot be read keeps its value, to be tried again at
    the next request."""
    from django.conf import settings

    if not _store.lock.acquire(blocking=False):
        # Another thread of this process is refreshing.
        return
    try:
        now = time.time()
        stale = {arn for arn, _ in _store.bound.values() if now - _store.cached[arn].read_at >= max_age}
        for arn in stale:
            try:
                _read(arn)
            except SecretUnavailable as exc:
                logger.warning("Kept the secret read before: %s", exc)
        for setting, (arn, key) in _store.bound.items():
            value = _field(_store.cached[arn].value, key)
            previous = getattr(settings, setting)
            if value == previous:
                continue
            if setting == "SECRET_KEY":
                # Cookies and sessions signed with the key before still verify.
                settings.SECRET_KEY_FALLBACKS = [previous, *settings.SECRET_KEY_FALLBACKS]
            setattr(settings, setting, value)
            logger.info("%s changed in Secrets Manager; the new value is in use", setting)
    finally:
        _store.lock.release()


def forget() -> None:
    """Drop every value read and every binding (tests start from nothing)."""
    _store.cached.clear()
    _store.bound.clear()
    _store.clients.clear()
