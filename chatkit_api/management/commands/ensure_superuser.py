"""Create an admin login, or make an existing one a superuser with a new password, without a
terminal: the first sign-in of a deployment whose database nothing outside can reach.

    DJANGO_SUPERUSER_PASSWORD=... manage.py ensure_superuser alice --email alice@shop.example
    manage.py ensure_superuser alice --password-file /run/secrets/admin-password
    manage.py ensure_superuser alice --password-env ADMIN_PASSWORD
    manage.py ensure_superuser alice --password-secret arn:aws:secretsmanager:...

The username and email default to DJANGO_SUPERUSER_USERNAME and DJANGO_SUPERUSER_EMAIL, as
for `createsuperuser --noinput`. The password is read from an environment variable
(DJANGO_SUPERUSER_PASSWORD unless --password-env names another), a file, or a Secrets Manager
secret (the whole value, or its DJANGO_SUPERUSER_PASSWORD key when it holds a JSON object, as
the service's own secret does), never from the command line, and is never written out. On
Lambda: invoke the function with {"manage": ["ensure_superuser", "alice", "--password-secret",
"<the secret's ARN>"]} (see docs/aws.md, "The first admin login").
"""

import os
from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from chatkit_site import aws_secrets

# The name createsuperuser --noinput reads.
DEFAULT_PASSWORD_VARIABLE = "DJANGO_SUPERUSER_PASSWORD"  # noqa: S105


class Command(BaseCommand):
    help = (
        "Create a superuser, or give an existing user superuser rights and a new password, "
        "with the password read from an environment variable or a file."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "username",
            nargs="?",
            default=os.environ.get("DJANGO_SUPERUSER_USERNAME", ""),
            help="The login's username (default DJANGO_SUPERUSER_USERNAME).",
        )
        parser.add_argument(
            "--email",
            default=os.environ.get("DJANGO_SUPERUSER_EMAIL", ""),
            help="Its email address (default DJANGO_SUPERUSER_EMAIL); an existing user's is kept when empty.",
        )
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--password-env",
            default=DEFAULT_PASSWORD_VARIABLE,
            metavar="VARIABLE",
            help=f"The environment variable holding the password (default {DEFAULT_PASSWORD_VARIABLE}).",
        )
        source.add_argument(
            "--password-file",
            type=Path,
            metavar="PATH",
            help="A file holding the password (one trailing newline is ignored).",
        )
        source.add_argument(
            "--password-secret",
            metavar="ARN",
            help="A Secrets Manager secret holding the password, or a JSON object holding it "
            f"under {DEFAULT_PASSWORD_VARIABLE}.",
        )

    def handle(
        self,
        *args: Any,
        username: str,
        email: str,
        password_env: str,
        password_file: Path | None,
        password_secret: str | None,
        **options: Any,
    ) -> None:
        username = username.strip()
        if not username:
            raise CommandError("Name the username (or set DJANGO_SUPERUSER_USERNAME).")
        password = self._password(
            password_env=password_env, password_file=password_file, password_secret=password_secret
        )
        user_model = get_user_model()
        with transaction.atomic():
            user = (
                user_model._default_manager.select_for_update()
                .filter(**{user_model.USERNAME_FIELD: username})
                .first()
            )
            created = user is None
            if user is None:
                user = user_model(**{user_model.USERNAME_FIELD: username})
            if email:
                user.email = email
            try:
                validate_password(password, user)
            except ValidationError as exc:
                raise CommandError(f"The password was refused: {' '.join(exc.messages)}") from None
            user.set_password(password)
            user.is_staff = user.is_superuser = user.is_active = True
            user.save()
        done = "created" if created else "updated: superuser, active, new password"
        self.stdout.write(self.style.SUCCESS(f"Superuser {username!r} {done}."))

    def _password(self, *, password_env: str, password_file: Path | None, password_secret: str | None) -> str:
        if password_secret is not None:
            try:
                password = aws_secrets.secret_field(password_secret, DEFAULT_PASSWORD_VARIABLE)
            except aws_secrets.SecretUnavailable as exc:
                raise CommandError(f"The password secret could not be read: {exc}") from None
            if not password:
                raise CommandError(
                    f"The secret {password_secret} holds no password (nor a {DEFAULT_PASSWORD_VARIABLE} key)."
                )
            return password
        if password_file is not None:
            try:
                password = password_file.read_text(encoding="utf-8").removesuffix("\n")
            except OSError as exc:
                raise CommandError(
                    f"The password file could not be read: {exc.strerror} ({password_file})."
                ) from None
            if not password.strip():
                raise CommandError(f"The password file {password_file} is empty.")
            return password
        password = os.environ.get(password_env, "")
        if not password.strip():
            raise CommandError(f"{password_env} is not set: it holds the password (or give --password-file).")
        return password
