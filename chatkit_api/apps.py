from typing import Any

from django.apps import AppConfig
from django.core.management import call_command
from django.db.models.signals import post_migrate


def _create_cache_tables(*, using: str, **kwargs: Any) -> None:
    # The rate-limit counters live in the database cache's table, which `migrate` does not
    # create by itself. Running after every migrate also covers a deployment that switches
    # from Redis back to the database; createcachetable skips tables that exist.
    call_command("createcachetable", database=using, verbosity=0)


class ChatkitApiConfig(AppConfig):
    name = "chatkit_api"
    verbose_name = "ChatKit transcripts"

    def ready(self) -> None:
        post_migrate.connect(_create_cache_tables, sender=self)
