"""Let a staff member sign in to the admin again before the sign-in limit's window ends.

    manage.py admin_sign_in_unlock alice               # the username's attempts
    manage.py admin_sign_in_unlock --ip 203.0.113.7    # an address's attempts
    manage.py admin_sign_in_unlock alice --ip 203.0.113.7

On Lambda: invoke the function with {"manage": ["admin_sign_in_unlock", "alice"]}.
"""

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from chatkit_api.admin_sign_in import admin_sign_in_subject
from chatkit_api.ratelimits import (
    ADMIN_SIGN_INS_PER_IP,
    ADMIN_SIGN_INS_PER_USER,
    ip_subject,
    rate_limit_reset,
)


class Command(BaseCommand):
    help = "Forget this window's admin sign-in attempts for a username and/or a client address."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("username", nargs="?", default="", help="The staff member's username.")
        parser.add_argument("--ip", default="", help="The address the attempts came from.")

    def handle(self, *args: Any, username: str, ip: str, **options: Any) -> None:
        if not username and not ip:
            raise CommandError("Name a username, an --ip address, or both.")
        if username:
            rate_limit_reset(limit=ADMIN_SIGN_INS_PER_USER, subject=admin_sign_in_subject(username))
            self.stdout.write(f"Sign-in attempts for {username!r} forgotten.")
        if ip:
            rate_limit_reset(limit=ADMIN_SIGN_INS_PER_IP, subject=ip_subject(ip))
            self.stdout.write(f"Sign-in attempts from {ip} forgotten.")
