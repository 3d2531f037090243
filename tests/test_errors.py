"""The error tree: one mapping of Redis failures, and every class where the docstring says."""

from __future__ import annotations

import re

import pytest
import redis

from threatshare import errors
from threatshare.embedded import free_port
from threatshare.errors import StoreUnavailable, redis_errors
from threatshare.http_limits import ResponseTooLarge
from threatshare.zia.errors import CategoryGone, ZiaRejected


def test_a_redis_failure_is_a_temporary_store_error_naming_no_detail() -> None:
    """Redis trouble becomes StoreUnavailable, naming Redis's error class but not its text."""
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5, retry=None)
    with pytest.raises(StoreUnavailable) as caught, redis_errors("outbox"):
        dead.ping()
    dead.close()
    assert caught.value.code == "store_unavailable" and caught.value.kind == "temporary"
    assert caught.value.message == "outbox: Redis ConnectionError"


def test_other_errors_pass_through_unchanged() -> None:
    """Only Redis errors are mapped; anything else leaves the block as it was raised."""
    with pytest.raises(KeyError), redis_errors("run"):
        raise KeyError("x")


def test_every_class_of_the_tree_is_drawn_and_documented() -> None:
    """The module docstring draws every error class, and each has a docstring of its own."""
    drawn = set(re.findall(r"[─└├]── (\w+)", errors.__doc__ or ""))
    classes = {
        cls
        for cls in (*vars(errors).values(), ZiaRejected, CategoryGone, ResponseTooLarge)
        if isinstance(cls, type) and issubclass(cls, errors.ThreatshareError)
    }
    assert {cls.__name__ for cls in classes} - {"ThreatshareError"} == drawn
    leaves = classes - {errors.ThreatshareError}
    assert all(cls.__doc__ and cls.__doc__ != errors.ThreatshareError.__doc__ for cls in leaves)
