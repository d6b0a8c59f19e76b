"""Firing work from several threads at once, each with its own database connection."""

import threading
from collections.abc import Callable
from typing import Any

from django.db import connections


def fire_together(count: int, action: Callable[[], Any]) -> list[Any]:
    """Run `action` in `count` threads released at the same moment; their results in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait()
            results[index] = action()
        finally:
            # Each thread opened its own database connection.
            connections.close_all()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
