"""Request limits shared by every instance: one counter per limit, subject and window.

A request counts itself with one atomic statement and learns the new count in the same
round trip: in the database an INSERT ... ON CONFLICT DO UPDATE ... RETURNING (PostgreSQL
and SQLite), in Redis (with REDIS_URL) INCR in a MULTI/EXEC pipeline. A burst of concurrent
requests therefore gets exactly the limit, and a session call pays one round trip for it.
Windows are fixed and aligned to the clock.
"""

import functools
import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from chatkit_api.exceptions import RateLimited, RateLimitUnavailable
from chatkit_api.models import RateLimitCounter

logger = logging.getLogger(__name__)

# Counters outlive their window by this much, so that a clock slightly behind on another
# instance still finds them.
_CLOCK_SKEW_SECONDS = 60


@dataclass(frozen=True)
class RateLimit:
    setting: str
    # Completes "at most 10 ... per hour" in the 429 message.
    counts: str


SESSIONS_PER_IP = RateLimit("RATE_LIMIT_SESSIONS_PER_IP", "chat sessions from one address")
TRANSCRIPTS_PER_IP = RateLimit("RATE_LIMIT_TRANSCRIPTS_PER_IP", "transcript requests from one address")
TRANSCRIPTS_PER_THREAD = RateLimit("RATE_LIMIT_TRANSCRIPTS_PER_THREAD", "transcripts of one conversation")
CHATKIT_REQUESTS_PER_IP = RateLimit("RATE_LIMIT_CHATKIT_REQUESTS_PER_IP", "ChatKit requests from one address")
VISITOR_COPIES_PER_ADDRESS = RateLimit(
    "RATE_LIMIT_VISITOR_COPIES_PER_ADDRESS", "transcript copies to one email address"
)
VISITOR_COPIES_PER_VISITOR = RateLimit(
    "RATE_LIMIT_VISITOR_COPIES_PER_VISITOR", "transcript copies for one visitor"
)
VISITOR_COPIES_PER_IP = RateLimit("RATE_LIMIT_VISITOR_COPIES_PER_IP", "transcript copies from one address")
VISITOR_COPIES_SITE_WIDE = RateLimit("RATE_LIMIT_VISITOR_COPIES_SITE_WIDE", "transcript copies to visitors")
ADMIN_SIGN_INS_PER_IP = RateLimit(
    "RATE_LIMIT_ADMIN_SIGN_INS_PER_IP", "admin sign-in attempts from one address"
)
ADMIN_SIGN_INS_PER_USER = RateLimit(
    "RATE_LIMIT_ADMIN_SIGN_INS_PER_USER", "admin sign-in attempts for one username"
)

_PERIOD_NAMES = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


def ip_subject(ip: str) -> str:
    """What an address is counted as: itself for IPv4, its /64 network for IPv6.

    One IPv6 subscriber usually holds a whole /64 and can pick any address in it.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _count_in_database(key: str, expires_at: float) -> int:
    table = connection.ops.quote_name(RateLimitCounter._meta.db_table)
    columns = {field.name: field.column for field in RateLimitCounter._meta.concrete_fields if field.column}
    key_column, count_column, expires_column = (
        connection.ops.quote_name(columns[name]) for name in ("key", "count", "expires_at")
    )
    expires = connection.ops.adapt_datetimefield_value(datetime.fromtimestamp(expires_at, tz=UTC))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({key_column}, {count_column}, {expires_column}) VALUES (%s, 1, %s) "  # noqa: S608 - names from the model, values as parameters
            f"ON CONFLICT ({key_column}) DO UPDATE SET {count_column} = {table}.{count_column} + 1 "
            f"RETURNING {count_column}",
            [key, expires],
        )
        count = int(cursor.fetchone()[0])
    if count == 1:
        # A window has started for this subject: counters of windows that are over go.
        RateLimitCounter.objects.filter(expires_at__lt=timezone.now()).delete()
    return count


@functools.lru_cache(maxsize=2)
def _redis(url: str, timeout: float) -> Any:
    # Imported only where Redis is configured.
    import redis

    # A Redis that does not answer fails the request as a database that does not answer would.
    return redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)


def _count_in_redis(url: str, key: str, ttl: int) -> int:
    pipeline = _redis(url, settings.STORE_WAIT_SECONDS).pipeline(transaction=True)
    pipeline.incr(f"chatkit:{key}")
    pipeline.expire(f"chatkit:{key}", ttl)
    count, _ = pipeline.execute()
    return int(count)


def _window_key(limit: RateLimit, subject: str, seconds: int, now: float) -> str:
    window = int(now // seconds)
    # Hashed: keys stay short and valid whatever the subject, and the store holds no
    # addresses in clear.
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    return f"ratelimit:{limit.setting.lower()}:{seconds}:{window}:{digest}"


def rate_limit_reset(*, limit: RateLimit, subject: str) -> None:
    """Forget what `subject` has used of `limit` in the current window."""
    rate: tuple[int, int] | None = getattr(settings, limit.setting)
    if rate is None:
        return
    key = _window_key(limit, subject, rate[1], time.time())
    if settings.REDIS_URL:
        _redis(settings.REDIS_URL, settings.STORE_WAIT_SECONDS).delete(f"chatkit:{key}")
    else:
        RateLimitCounter.objects.filter(key=key).delete()


def rate_limit_consume(*, limit: RateLimit, subject: str) -> None:
    """Count one request against `limit` for `subject`; RateLimited when it is used up."""
    rate: tuple[int, int] | None = getattr(settings, limit.setting)
    if rate is None:
        return
    count, seconds = rate
    now = time.time()
    retry_after = max(1, math.ceil((int(now // seconds) + 1) * seconds - now))
    key = _window_key(limit, subject, seconds, now)
    ttl = retry_after + _CLOCK_SKEW_SECONDS
    try:
        if settings.REDIS_URL:
            used = _count_in_redis(settings.REDIS_URL, key, ttl)
        else:
            used = _count_in_database(key, now + ttl)
    # Any backend failure (a database error, Redis down) means the count is unknown; the
    # request is refused rather than let through unlimited.
    except Exception as exc:
        logger.exception("The rate-limit counters failed while counting %s", limit.setting)
        raise RateLimitUnavailable() from exc
    if used > count:
        period = _PERIOD_NAMES.get(seconds, f"{seconds} seconds")
        raise RateLimited(
            f"Too many requests: at most {count} {limit.counts} per {period}. "
            f"Try again in {retry_after} seconds.",
            retry_after=retry_after,
        )
