"""The error tree: one mapping of Redis failures, and every class where the docstring says."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest
import redis

import threatshare
from threatshare import errors
from threatshare.embedded import free_port
from threatshare.errors import StoreUnavailable, redis_errors
from threatshare.http_limits import ResponseTooLarge
from threatshare.zia.errors import CategoryGone, EmptyCategoryRefused, ZiaRejected

ROOT = Path(__file__).resolve().parent.parent


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


def _subclasses(cls: type) -> set[type]:
    """Every class below ``cls``, at any depth."""
    found: set[type] = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _project_classes() -> set[type]:
    """The error classes the project defines, in any of its modules (tests may define their
    own; they are left out)."""
    for module in pkgutil.walk_packages(threatshare.__path__, "threatshare."):
        if not module.name.endswith("__main__"):  # that one runs the CLI
            importlib.import_module(module.name)
    return {
        cls
        for cls in _subclasses(errors.ThreatshareError)
        if cls.__module__.startswith("threatshare.")
    }


def test_every_class_of_the_tree_is_drawn_and_documented() -> None:
    """The module docstring draws every error class, and each has a docstring of its own."""
    drawn = set(re.findall(r"[─└├]── (\w+)", errors.__doc__ or ""))
    classes = _project_classes()
    assert {ZiaRejected, CategoryGone, EmptyCategoryRefused, ResponseTooLarge} <= classes
    assert {cls.__name__ for cls in classes} == drawn
    assert all(cls.__doc__ and cls.__doc__ != errors.ThreatshareError.__doc__ for cls in classes)


def test_every_code_is_drawn() -> None:
    """Every code the product raises, a class's default or one given where it is raised, is
    named in the drawing of the tree."""
    doc = errors.__doc__ or ""
    # Generic defaults no raise relies on: every raise of these names its upstream's code.
    generic = {"signal", "auth", "forbidden", "request_rejected"}
    defaults = {cls.default_code for cls in _project_classes()} - generic
    given: set[str] = set()
    for path in (ROOT / "threatshare").rglob("*.py"):
        if "sandbox" not in path.parts:
            given |= set(re.findall(r'\bcode="([a-z_]+)"', path.read_text(encoding="utf-8")))
    assert {"zia_auth_pending", "internal", "zia_category_needs_entries"} <= defaults | given
    missing = {code for code in defaults | given if not re.search(rf"\b{code}\b", doc)}
    assert not missing, f"codes not drawn in threatshare/errors.py: {sorted(missing)}"


def test_signals_are_neither_temporary_nor_permanent_errors() -> None:
    """The control signals have a branch of their own, apart from what the retry policy
    retries and from what halts an instance."""
    signals = _subclasses(errors.Signal)
    assert {errors.LockLost, CategoryGone, EmptyCategoryRefused} <= signals
    assert not any(issubclass(s, (errors.TemporaryError, errors.PermanentError)) for s in signals)
