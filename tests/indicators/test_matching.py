"""ZIA's matching of entries against a requested URL (docs/design.md#provenance-and-audit)."""

from __future__ import annotations

import pytest

from threatshare.indicators.matching import blockers, blocks


@pytest.mark.parametrize(
    ("entry", "target", "expected"),
    [
        ("evil.example", "evil.example/any/path", True),
        ("evil.example", "evil.example:8443/x", True),
        ("evil.example", "sub.evil.example", False),
        (".evil.example", "evil.example", True),
        (".evil.example", "a.b.evil.example/p", True),
        (".evil.example", "notevil.example", False),
        ("evil.example:8443", "evil.example:8443/x", True),
        ("evil.example:8443", "evil.example/x", False),
        ("evil.example/login", "evil.example/login/step2", True),
        ("evil.example/login", "evil.example/logout", False),
        ("evil.example/login", "other.example/login", False),
        ("2606:4700::1111", "2606:4700::1111", True),
    ],
)
def test_blocks_follows_zias_matching(entry: str, target: str, expected: bool) -> None:
    """A host matches any port and path, a wildcard its subdomains, a path its prefixes."""
    assert blocks(entry, target) is expected


@pytest.mark.parametrize(
    "target",
    ["login.partner.example/account/reset/step2", "a.b.c.example:8443/x/y", "evil.example"],
)
def test_blockers_lists_exactly_the_entries_that_block(target: str) -> None:
    """Every candidate blocks the target, and an entry that blocks it is a candidate."""
    found = blockers(target)
    assert found and all(blocks(entry, target) for entry in found)
    assert len(found) == len(set(found))
    for entry in ("partner.example", ".example.org", "login.partner.example/accounts"):
        assert entry not in found
    host = target.split("/")[0].split(":")[0]
    assert host in found and "." + host in found


def test_blockers_names_the_wider_entries_of_a_deep_url() -> None:
    """The host, its parent wildcards and the shorter paths of a URL all block it."""
    found = blockers("login.partner.example/account/reset/step2")
    for entry in (
        "login.partner.example",
        ".partner.example",
        "login.partner.example/account/reset",
        "login.partner.example/account/",
    ):
        assert entry in found


def test_blockers_of_an_ip_literal_have_no_wildcard() -> None:
    """No wildcard covers an IP address: only the address and its paths block it."""
    found = blockers("203.0.113.9/p")
    assert not any(e.startswith(".") for e in found)
    assert "203.0.113.9" in found
