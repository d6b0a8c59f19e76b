"""Request limits shared by every instance, kept in Django's default cache.

Each window of a limit holds `count` numbered tickets, and a request goes through only if
it claims one with `cache.add`. Both shared backends make that claim atomic: the database
cache inserts a row under a primary key, Redis runs SET NX. A burst of concurrent requests
therefore gets at most `count` tickets. `cache.incr` would not do: the database cache
implements it as a read and then a write, so concurrent requests read the same count and
all pass.
"""

import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from chatkit_api.exceptions import RateLimited, RateLimitUnavailable

logger = logging.getLogger(__name__)

# Tickets outlive their window by this much, so that a clock slightly behind on another
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


def _claim_ticket(base: str, count: int, timeout: int) -> bool:
    # `issued` only saves probing tickets that are known to be taken; it is written without
    # a lock and may lag, which costs a few failed `add`s, never an extra ticket.
    issued_key = f"{base}:issued"
    for ticket in range(cache.get(issued_key, 0), count):
        if cache.add(f"{base}:{ticket}", 1, timeout):
            cache.set(issued_key, ticket + 1, timeout)
            return True
    return False


def rate_limit_consume(*, limit: RateLimit, subject: str) -> None:
    """Count one request against `limit` for `subject`; RateLimited when it is used up."""
    rate: tuple[int, int] | None = getattr(settings, limit.setting)
    if rate is None:
        return
    count, seconds = rate
    now = time.time()
    window = int(now // seconds)
    retry_after = max(1, math.ceil((window + 1) * seconds - now))
    # Hashed: cache keys stay short and valid whatever the subject, and the cache holds no
    # addresses in clear.
    digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
    base = f"ratelimit:{limit.setting.lower()}:{seconds}:{window}:{digest}"
    try:
        claimed = _claim_ticket(base, count, retry_after + _CLOCK_SKEW_SECONDS)
    # Any backend failure (a database error, Redis down) means the count is unknown; the
    # request is refused rather than let through unlimited.
    except Exception as exc:
        logger.exception("The rate-limit cache failed while counting %s", limit.setting)
        raise RateLimitUnavailable() from exc
    if not claimed:
        period = _PERIOD_NAMES.get(seconds, f"{seconds} seconds")
        raise RateLimited(
            f"Too many requests: at most {count} {limit.counts} per {period}. "
            f"Try again in {retry_after} seconds.",
            retry_after=retry_after,
        )
