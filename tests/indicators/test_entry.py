"""Reading what an operator types as the entry of a category."""

from __future__ import annotations

import pytest

from threatshare.indicators.entry import NotAnEntry, entry_of


@pytest.mark.parametrize(
    ("argument", "entry"),
    [
        ("https://Evil.Example.COM:443/Login?x=1#f", "evil.example.com/login"),
        ("evil.example", "evil.example"),
        ("Evil.Example.", "evil.example"),
        (".Look-Alike.example", ".look-alike.example"),
        ("evil.example/login", "evil.example/login"),
        ("http://bücher.example:8080/a/", "xn--bcher-kva.example:8080/a/"),
    ],
)
def test_an_argument_is_read_as_a_record_is(argument: str, entry: str) -> None:
    """A full URL, a host or an entry as ZIA shows it gives the entry a record would give."""
    assert entry_of(argument) == entry


@pytest.mark.parametrize("argument", ["ftp://x.example/", "http://10.0.0.1/", "", "a..b.example"])
def test_an_argument_that_is_no_entry_is_refused_with_the_reason(argument: str) -> None:
    """What cannot be an entry is refused with the reason."""
    with pytest.raises(NotAnEntry, match="is not an entry of a category"):
        entry_of(argument)
