"""Script calls sent back to back and answered at the end, against a real Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from threatshare.state.streamed import call_per_chunk

# Adds its arguments to a set; a call whose first argument is "fail" raises inside Redis.
_ADD = """
if ARGV[1] == 'fail' then return redis.error_reply('refused chunk') end
for _, value in ipairs(ARGV) do redis.call('SADD', KEYS[1], value) end
return #ARGV
"""


def test_every_chunk_answers_in_order(redis_client: redis.Redis) -> None:
    script = redis_client.register_script(_ADD)
    sizes = ((0, 3), (3, 1), (4, 500))
    chunks = [[str(n) for n in range(start, start + size)] for start, size in sizes]
    answers = call_per_chunk(redis_client, script, ["s"], chunks)
    assert answers == [3, 1, 500]
    assert redis_client.scard("s") == 504


def test_a_chunk_is_sent_before_the_next_is_built(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """While the second chunk is being built, Redis already holds what the first wrote."""
    script = redis_client.register_script(_ADD)
    watcher = redis.Redis.from_url(redis_url)
    seen_while_building: list[bool] = []

    def chunks() -> Iterator[list[str]]:
        yield ["first"]
        deadline = time.monotonic() + 10
        while not watcher.sismember("s", "first") and time.monotonic() < deadline:
            time.sleep(0.01)
        seen_while_building.append(bool(watcher.sismember("s", "first")))
        yield ["second"]

    try:
        assert call_per_chunk(redis_client, script, ["s"], chunks()) == [1, 1]
    finally:
        watcher.close()
    assert seen_while_building == [True]
    assert redis_client.smembers("s") == {b"first", b"second"}


def test_works_after_redis_forgot_its_scripts(redis_client: redis.Redis) -> None:
    """A restarted or flushed Redis knows no script: the calls carry the script itself."""
    script = redis_client.register_script(_ADD)
    assert call_per_chunk(redis_client, script, ["s"], [["a"]]) == [1]
    redis_client.script_flush()
    assert call_per_chunk(redis_client, script, ["s"], [["b"], ["c"]]) == [1, 1]
    assert redis_client.scard("s") == 3


def test_an_error_answer_is_raised_after_the_chunks_before_it(redis_client: redis.Redis) -> None:
    script = redis_client.register_script(_ADD)
    with pytest.raises(redis.ResponseError, match="refused chunk"):
        call_per_chunk(redis_client, script, ["s"], [["a"], ["fail"], ["c"]])
    # Each chunk sent was carried out or refused on its own, as separate calls would be (the
    # one after the refused chunk may still be on its way: waited for, not assumed).
    deadline = time.monotonic() + 10
    while not redis_client.sismember("s", "c") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert redis_client.smembers("s") == {b"a", b"c"}
    # The connection that still had an answer in flight was closed, not handed back half
    # read: the next call on the same client reads its own answers.
    assert call_per_chunk(redis_client, script, ["t"], [["x"], ["y", "z"]]) == [1, 2]
    assert redis_client.get("missing") is None


def test_no_chunk_sends_nothing(redis_client: redis.Redis) -> None:
    script = redis_client.register_script(_ADD)
    assert call_per_chunk(redis_client, script, ["s"], []) == []
    assert not redis_client.exists("s")
