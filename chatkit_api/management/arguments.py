"""Argument types the management commands share."""

from argparse import ArgumentParser, ArgumentTypeError
from datetime import datetime, time

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime


def date_or_moment(value: str) -> datetime:
    """A date (midnight in TIME_ZONE) or a date and time, e.g. 2026-11-20 or 2026-11-20T14:30."""
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD) or a date and time.")
        moment = datetime.combine(day, time.min)
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


def whole_days(value: str) -> int:
    """A retention window: a whole number of days, at least 1."""
    try:
        days = int(value)
    except ValueError:
        raise ArgumentTypeError(f"{value!r} is not a whole number of days.") from None
    if days < 1:
        raise ArgumentTypeError("must be at least 1 day.")
    return days


def retention_arguments(parser: ArgumentParser, *, older_than: str) -> None:
    """The purge commands' options: `--older-than DAYS` (described by `older_than`) and `--dry-run`."""
    parser.add_argument("--older-than", type=whole_days, metavar="DAYS", help=older_than)
    parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
