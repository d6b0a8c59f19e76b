"""The settings' one way to read the environment.

Unset and empty are the same: `NAME=` in a .env file means "use the default", for every
setting. A malformed value stops the start with a message that names the variable.

`source` is the process environment; the test settings replace it with fixed values, so
that no developer's .env or shell changes what the tests run with. `variables_read` is every
variable the settings asked for, which a test compares with the documentation.
"""

import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

source: Mapping[str, str] = os.environ
variables_read: set[str] = set()


def env_str(name: str, default: str = "") -> str:
    """The variable's value; unset and empty (`NAME=` in .env) both mean the default."""
    variables_read.add(name)
    return source.get(name, "").strip() or default


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


def env_positive_int(name: str, default: int) -> int:
    value = env_int(name, default)
    if value < 1:
        raise ImproperlyConfigured(f"{name} must be 1 or more, not {value}.")
    return value


def env_list(name: str, default: str = "") -> list[str]:
    return [part.strip() for part in env_str(name, default).split(",") if part.strip()]


_RATE_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def env_rate(name: str, default: str) -> tuple[int, int] | None:
    """A limit written as `<count>/<second|minute|hour|day>`, e.g. `10/hour`: (count, seconds).

    `off` turns the limit off (None).
    """
    raw = env_str(name, default).lower()
    if raw == "off":
        return None
    count, _, period = raw.partition("/")
    if not count.isdigit() or int(count) < 1 or period not in _RATE_PERIODS:
        raise ImproperlyConfigured(
            f"{name} must look like 10/hour (a count of 1 or more per second, minute, hour or day) "
            f"or be off, not {raw!r}."
        )
    return int(count), _RATE_PERIODS[period]


def env_secret(name: str, *, setting: str = "") -> str:
    """A secret: read from Secrets Manager when `<name>_SECRET_ARN` is set (the environment
    then holds only where it is, see chatkit_site.aws_secrets), else the variable itself.
    `setting` is the Django setting it becomes, when that is not `name`."""
    arn = env_str(f"{name}_SECRET_ARN")
    value = env_str(name)
    if not arn:
        return value
    if value:
        raise ImproperlyConfigured(f"Set {name} or {name}_SECRET_ARN, not both.")
    from chatkit_site import aws_secrets

    try:
        return aws_secrets.setting_from_secret(setting or name, arn, name)
    except aws_secrets.SecretUnavailable as exc:
        raise ImproperlyConfigured(f"{name}_SECRET_ARN: {exc}") from exc
