"""The throughput bench runs our code on one core and its Redis on another
(bench/common.py::one_core_each)."""

from __future__ import annotations

import os

import pytest
import redis

from bench.common import one_core_each
from threatshare.embedded import EmbeddedRedis

pytestmark = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform"
)


def test_the_bench_and_its_redis_get_a_core_each_and_have_them_back_after() -> None:
    with EmbeddedRedis() as server:
        pid = server.pid
        assert pid is not None
        own, theirs = os.sched_getaffinity(0), os.sched_getaffinity(pid)
        with one_core_each(pid) as cores:
            if len(own) < 2:
                assert cores is None
                assert os.sched_getaffinity(0) == own
            else:
                assert cores is not None and cores["bench"] != cores["redis"]
                assert os.sched_getaffinity(0) == {cores["bench"]}
                assert os.sched_getaffinity(pid) == {cores["redis"]}
            client = redis.Redis.from_url(server.url)
            assert client.ping()  # the server still answers from its core
            client.close()
        assert os.sched_getaffinity(0) == own
        assert os.sched_getaffinity(pid) == theirs
    assert server.pid is None  # stopped: nothing left to place


def test_without_a_server_process_nothing_is_pinned() -> None:
    own = os.sched_getaffinity(0)
    with one_core_each(None) as cores:
        assert cores is None
        assert os.sched_getaffinity(0) == own
