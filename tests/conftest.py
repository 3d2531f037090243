"""Fixtures shared by the whole suite: a real Redis server, started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from threatshare.embedded import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A real redis-server on loopback, in memory, shared by the session (starts in ~0.1 s)."""
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """The URL of an empty Redis database for one test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of an empty Redis database for one test."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()
