import pytest
from django.core.cache import cache


@pytest.fixture
def empty_shared_cache():
    """For transactional tests: their flush empties model tables only, not the cache table."""
    cache.clear()
    yield
    cache.clear()
