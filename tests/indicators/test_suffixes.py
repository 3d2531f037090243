"""Public suffixes from the shipped list: registrable domains and what no entry may stand on."""

from __future__ import annotations

import re
from pathlib import Path

import publicsuffixlist
import pytest

from threatshare.indicators.suffixes import (
    SuffixList,
    at_or_above_suffix,
    registrable_domain,
    suffix_list,
)

VECTORS = Path(__file__).parent / "data" / "test_psl.txt"
_CHECK = re.compile(r"checkPublicSuffix\((null|'[^']*'), (null|'[^']*')\);")


def _vectors() -> list[tuple[str | None, str | None]]:
    found = []
    for line in VECTORS.read_text("utf-8").splitlines():
        match = _CHECK.fullmatch(line.strip())
        if match:
            given, wanted = (None if g == "null" else g[1:-1] for g in match.groups())
            found.append((given, wanted))
    return found


def _ascii(name: str) -> str:
    return name.lower() if name.isascii() else name.lower().encode("idna").decode()


def test_the_list_s_own_test_vectors_pass() -> None:
    """Every checkPublicSuffix vector published with the list gives its registrable domain."""
    vectors = _vectors()
    assert len(vectors) >= 70  # the file was found and read
    failures = []
    for given, wanted in vectors:
        got = None if given is None else registrable_domain(given)
        expected = None if wanted is None else _ascii(wanted)
        if got != expected:
            failures.append((given, wanted, got))
    assert failures == []


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("co.uk", True),
        ("github.io", True),
        ("s3.amazonaws.com", True),
        ("amazonaws.com", True),  # above s3.amazonaws.com
        ("blogspot.com", True),
        ("foo.ck", True),  # *.ck
        ("www.ck", False),  # !www.ck
        ("evil.github.io", False),
        ("evil-bucket.s3.amazonaws.com", False),
        ("evil.example", False),
        ("evil.co.uk", False),
    ],
)
def test_at_or_above_a_suffix(host: str, expected: bool) -> None:
    """A host is refused when it is a public suffix or a parent of one, not below one."""
    assert at_or_above_suffix(host) is expected


def test_registrable_domain_of_a_sender() -> None:
    """A subdomain gives the name its owner registered; a suffix gives none."""
    assert registrable_domain("mail.evil.example") == "evil.example"
    assert registrable_domain("a.b.evil.co.uk") == "evil.co.uk"
    assert registrable_domain("x.evil.github.io") == "evil.github.io"
    assert registrable_domain("github.io") is None
    assert registrable_domain(".evil.example") is None


def test_the_list_comes_from_the_package_with_its_version() -> None:
    """The list is the package's, versioned, with thousands of rules in both sections."""
    shipped = suffix_list()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", shipped.version)
    assert shipped.rules > 5000
    assert len(shipped.digest) == 16


def test_a_list_of_one_s_own_is_read_the_same_way() -> None:
    """A small list: rules, wildcards, exceptions and its version line are honoured."""
    small = SuffixList("// VERSION: test-1\nexample\n*.wild.example\n!keep.wild.example\n")
    assert small.version == "test-1"
    assert small.at_or_above("any.wild.example")
    assert not small.at_or_above("keep.wild.example")
    assert small.registrable("a.b.corp.example") == "corp.example"


def test_every_rule_of_the_list_agrees_with_the_package_s_own_reading() -> None:
    """Below, on and at every rule of the shipped list, our registrable domain is the one the
    publicsuffixlist package itself computes."""
    theirs = publicsuffixlist.PublicSuffixList()
    rules = [
        line.split()[0].lower().lstrip("!").removeprefix("*.")
        for line in Path(publicsuffixlist.PSLFILE).read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("//")
    ]
    assert len(rules) > 5000
    differences = []
    for rule in rules:
        for name in (rule, f"a.{rule}", f"b.a.{rule}"):
            ascii_name = name if name.isascii() else name.encode("idna").decode()
            expected = theirs.privatesuffix(ascii_name)
            if registrable_domain(name) != expected:
                differences.append((name, expected, registrable_domain(name)))
    assert differences == []
