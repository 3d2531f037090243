"""ZIA's URL-entry rules as the emulated tenant applies them (docs/design.md#entries)."""

from __future__ import annotations

import pytest

from threatshare.sandbox.zia_urls import entry_problem

VALID = [
    "evil.example.com",
    ".evil.example.com",
    "evil.example.com/login",
    "evil.example.com/res/",
    "h.example:8443",
    "h.example:8443/a/b?x=1",
    "xn--bcher-kva.example:8080/a/",
    "safe_march.com",
    "a-b.c-d.example",
    "203.0.113.7",
    "203.0.113.7/path",
    "2606:4700::1111",
    "a" * 63 + ".example",
    "e.example/" + "p" * (1024 - len("e.example/")),
]

INVALID = [
    "",
    "http://evil.example",
    "*.example.com",
    "evil.example/*",
    "Evil.example",
    "evil.example/Login",
    "bücher.example",
    "evil example.com",
    "evil.example\n",
    "localhost",
    ".com",
    ".",
    "evil..example",
    ".evil.example.",
    "evil.example.",
    "a" * 64 + ".example",
    ".".join(["a" * 60] * 5) + ".example",
    "e.example/" + "p" * (1025 - len("e.example/")),
    "www.safe_march.com",
    "evil.ex_ample",
    "_.example",
    "h.example:0",
    "h.example:70000",
    "h.example:http",
    "999.1.1.1",
    "1.2.3",
    ".203.0.113.7",
    "2606:4700::zzzz",
    "2606:4700::1111/path",
    "[2606:4700::1111]",
]


@pytest.mark.parametrize("entry", VALID)
def test_valid_entries_are_accepted(entry: str) -> None:
    """Entries within ZIA's documented rules have no problem."""
    assert entry_problem(entry) is None


@pytest.mark.parametrize("entry", INVALID)
def test_invalid_entries_are_refused_with_a_reason(entry: str) -> None:
    """Each documented rule refuses the entries that break it, with a readable reason."""
    problem = entry_problem(entry)
    assert isinstance(problem, str) and problem


@pytest.mark.parametrize("value", [None, 7, ["evil.example"]])
def test_non_strings_are_refused(value: object) -> None:
    """Anything but a string is not an entry."""
    assert entry_problem(value) is not None
