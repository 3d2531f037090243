"""What is never blocked: wrappers unwrapped, public suffixes, platforms, policy verdicts and
wildcards over allowed hosts, decided by the extractor from the shipped rules."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from threatshare.indicators.extract import Extractor, Tally
from threatshare.indicators.rules import Rules
from threatshare.indicators.wrappers import decoder_for

BOTH = ("malicious_urls", "url_domains")
EVIL = ["evil.example/x", "evil.example"]


def url(value: str, **fields: Any) -> dict[str, Any]:
    return {"url": value, "scanResult": "malicious", "category": "Compromised", **fields}


def sender(address: str) -> dict[str, Any]:
    return {"senderAddress": address, "identifiers": ["similar_internal_domain"]}


def google(target: str) -> str:
    return "https://www.google.com/url?q=" + quote(target, safe="")


def run(record: dict[str, Any], sources: tuple[str, ...] = BOTH, **kw: Any) -> tuple[list, dict]:
    tally = Tally()
    extractor = Extractor(sources, **kw)
    extract = extractor.impersonation_record if "senderAddress" in record else extractor.url_record
    return list(extract(record, tally)), dict(tally.skipped)


# (id, wrapped URL): each carries https://evil.example/x
# fmt: off
WRAPPED = [
    ("google-url", "https://www.google.com/url?q=https://evil.example/x&sa=D"),
    ("google-url-param", "https://google.com/url?url=https%3A%2F%2Fevil.example%2Fx"),
    ("google-amp", "https://www.google.com/amp/s/evil.example/x"),
    ("facebook", "https://l.facebook.com/l.php?u=https%3A%2F%2Fevil.example%2Fx&h=AT0"),
    ("safelinks", "https://nam02.safelinks.protection.outlook.com/?url=https%3A%2F%2Fevil.example"
                  "%2Fx&data=05%7C01&reserved=0"),
    ("proofpoint-v1", "https://urldefense.proofpoint.com/v1/url?u=https%3A%2F%2Fevil.example%2Fx"
                      "&k=abc"),
    ("proofpoint-v2", "https://urldefense.proofpoint.com/v2/url?u=https-3A__evil.example_x&d=DwM"),
    ("proofpoint-v3", "https://urldefense.com/v3/__https://evil.example*x__;Lw!!CQl3mcHX!abc$"),
    ("barracuda", "https://linkprotect.cudasvc.com/url?a=https%3a%2f%2fevil.example%2fx&c=E,1"),
    ("cisco", "https://secure-web.cisco.com/1aBcToken/https%3A%2F%2Fevil.example%2Fx"),
    ("bing", "https://www.bing.com/ck/a?!&&p=abc&u=a1aHR0cHM6Ly9ldmlsLmV4YW1wbGUveA&ntb=1"),
    ("linkedin", "https://www.linkedin.com/redir/redirect?url=https%3A%2F%2Fevil.example%2Fx"),
    ("mixed-case-host", "https://WWW.Google.COM/url?q=https://evil.example/x"),
    ("idn-fullwidth-host", "https://ｗｗｗ.ｇｏｏｇｌｅ.com/url?q=https://evil.example/x"),
    ("mixed-case-safelinks", "https://EUR01.SafeLinks.Protection.Outlook.com/?URL=https%3A%2F%2F"
                             "evil.example%2Fx"),
]
# fmt: on


@pytest.mark.parametrize("wrapped", [w for _, w in WRAPPED], ids=[i for i, _ in WRAPPED])
def test_a_wrapper_gives_its_target_and_never_itself(wrapped: str) -> None:
    """The target inside a wrapper is pushed; the wrapper is counted as such and never pushed."""
    entries, skipped = run(url(wrapped))
    assert entries == EVIL
    assert skipped == {"wrapper": 1}


def test_three_levels_of_wrapping_are_undone_and_a_fourth_is_not() -> None:
    """Nested wrappers are undone three deep; deeper, the record gives no entry at all."""
    three = google(google(google("https://evil.example/x")))
    assert run(url(three)) == (EVIL, {"wrapper": 1})
    four = google(three)
    assert run(url(four)) == ([], {"wrapper": 1})
    mixed = google(
        "https://nam02.safelinks.protection.outlook.com/?url="
        + quote("https://urldefense.proofpoint.com/v2/url?u=https-3A__evil.example_x", safe="")
    )
    assert run(url(mixed)) == (EVIL, {"wrapper": 1})


def test_a_wrapper_whose_target_is_protected_gives_nothing() -> None:
    """The target is filtered like any URL: a protected endpoint or host inside stays out."""
    drive = google("https://drive.google.com/uc?export=download&id=X")
    entries, skipped = run(url(drive))
    assert entries == []
    assert skipped == {"wrapper": 1, "protected_query": 1, "protected_host": 1}
    assert run(url(google("https://docs.google.com/")))[0] == []


@pytest.mark.parametrize(
    "wrapped",
    [
        "https://protect-eu.mimecast.com/s/AbCdEf?domain=evil.example",
        "https://www.google.com/url?sa=t&source=web",  # no target parameter
        "https://urldefense.com/v3/__https://evil.example*x__;!!broken",
        "https://secure-web.cisco.com/",
        "https://www.google.com/url?q=mailto:x@evil.example",
    ],
)
def test_a_wrapper_without_a_recoverable_target_gives_no_entry(wrapped: str) -> None:
    """When the target cannot be read, nothing is pushed: neither wrapper nor a guess."""
    entries, skipped = run(url(wrapped))
    assert entries == []
    assert skipped.get("wrapper") == 1


def test_a_wrapper_host_is_never_pushed_at_host_level() -> None:
    """A link on a wrapper's host that is not a wrapped link keeps its path entry only."""
    entries, skipped = run(url("https://linkprotect.cudasvc.com/about/x"))
    assert entries == ["linkprotect.cudasvc.com/about/x"]
    assert skipped == {"wrapper": 1}


# (id, URL, entries, skipped)
# fmt: off
PLATFORMS = [
    ("query-dropped-would-be-endpoint", "https://drive.google.com/uc?export=download&id=X",
     [], {"protected_query": 1, "protected_host": 1}),
    ("consent-phishing", "https://login.microsoftonline.com/common/oauth2/v2.0/authorize?"
     "client_id=1", [], {"protected_query": 1, "protected_host": 1}),
    ("endpoint-without-query", "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/"
     "authorize", [], {"protected_endpoint": 1, "protected_host": 1}),
    ("above-an-endpoint", "https://login.microsoftonline.com/contoso.example",
     [], {"protected_endpoint": 1, "protected_host": 1}),
    ("document-path-kept", "https://docs.google.com/forms/d/e/1FAIpQL/viewform",
     ["docs.google.com/forms/d/e/1faipql/viewform"], {"protected_host": 1}),
    ("resolver-host", "https://8.8.8.8/", [], {"protected_host": 1}),
    ("resolver-doh", "https://1.1.1.1/dns-query", [],
     {"protected_endpoint": 1, "protected_host": 1}),
    ("free-mail", "https://mail.yahoo.com/", [], {"protected_host": 1}),
    ("suffix-host", "https://co.uk/", [], {"public_suffix": 1}),
    ("suffix-private", "https://github.io/", [], {"public_suffix": 1}),
    ("suffix-shared-bucket-host", "https://s3.amazonaws.com/", [], {"public_suffix": 1}),
    ("suffix-object-path", "https://s3.amazonaws.com/evil-bucket/p.html",
     ["s3.amazonaws.com/evil-bucket/p.html"], {"public_suffix": 1}),
    ("below-suffix", "https://evil-bucket.s3.amazonaws.com/", ["evil-bucket.s3.amazonaws.com"],
     {}),
    ("below-private-suffix", "https://evil.github.io/", ["evil.github.io"], {}),
    ("ip-range-path", "http://1.0.0.0/8", ["1.0.0.0"], {}),
    ("ip-range-port", "http://45.33.32.156:8080/24", ["45.33.32.156:8080", "45.33.32.156"], {}),
]
# fmt: on


@pytest.mark.parametrize(
    ("value", "entries", "skipped"),
    [case[1:] for case in PLATFORMS],
    ids=[case[0] for case in PLATFORMS],
)
def test_platforms_suffixes_and_addresses(value: str, entries: list[str], skipped: dict) -> None:
    """Shared platforms, public suffixes and address ranges give only what blocks the threat."""
    assert run(url(value)) == (entries, skipped)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (
            url(
                "https://oneclient.sfx.ms/Win/Preview/OneDriveSetup.exe",
                category="Dangerous file extension",
            ),
            "category",
        ),
        (
            url(
                "https://files.evil.example/a.exe",
                category="Business",
                tagMap={"DangerousFileExt": {"Status": ["Block"]}},
            ),
            "tag",
        ),
        (url("https://files.evil.example/a.exe", category="dangerous-file_EXTENSION"), "spelling"),
    ],
)
def test_policy_verdicts_are_never_pushed(record: dict[str, Any], expected: str) -> None:
    """A record whose verdict is a policy one gives no entry from any source."""
    assert run(record) == ([], {"policy_verdict": 1}), expected


def test_policy_verdicts_from_the_configuration() -> None:
    """A verdict named in the configuration is a policy verdict too."""
    record = url("https://files.evil.example/a.zip", category="Blocked archive")
    assert run(record)[0] == ["files.evil.example/a.zip", "files.evil.example"]
    rules = Rules(policy_verdicts=["Blocked Archive"])
    assert run(record, rules=rules) == ([], {"policy_verdict": 1})


@pytest.mark.parametrize(
    ("address", "entries", "skipped"),
    [
        ("x@mail.evil.example", [".evil.example"], {}),
        ("x@a.b.evil.co.uk", [".evil.co.uk"], {}),
        ("x@evil.github.io", [".evil.github.io"], {}),
        ("x@co.uk", [], {"public_suffix": 1}),
        ("x@github.io", [], {"public_suffix": 1}),
        ("x@s3.amazonaws.com", [], {"public_suffix": 1}),
        ("x@foo.amazonaws.com", [], {"public_suffix": 1}),  # .amazonaws.com is above a suffix
        ("x@gmail.com", [], {"protected_host": 1}),
        ("x@outlook.com", [], {"protected_host": 1}),
        ("x@Login.Partner.example", [], {"covers_allowed": 1}),  # .partner.example over it
        ("x@partner.example", [], {"covers_allowed": 1}),
        ("x@www.partner.example", [], {"covers_allowed": 1}),
        ("x@contoso-share.example", [], {"covers_allowed": 1}),  # over a protected host
    ],
)
def test_sender_domains(address: str, entries: list[str], skipped: dict) -> None:
    """A sender is pushed as its registrable domain, never over a suffix or an allowed host."""
    rules = Rules(protected_hosts=["files.contoso-share.example"])
    got = run(
        sender(address),
        ("malicious_domains",),
        allow=["https://login.partner.example/"],
        rules=rules,
    )
    assert got == (entries, skipped)


def test_allow_entries_written_as_urls_and_zia_entries_match() -> None:
    """``https://Partner.example/``, ``.partner.example`` and ``partner.example:443`` all allow
    the host and what is under it."""
    for written in ("https://Partner.example/", ".partner.example", "partner.example:443"):
        assert run(url("https://a.partner.example/x"), allow=[written]) == ([], {"allowed": 1})


def test_configured_wrappers_and_endpoints_apply() -> None:
    """Wrappers and endpoints added in configuration work like the shipped ones."""
    rules = Rules(
        protected_hosts=["sso.corp.example"],
        protected_endpoints=["sso.corp.example/*/saml"],
        wrappers=["go.corp.example/r query:dest"],
    )
    wrapped = url("https://go.corp.example/r?dest=https%3A%2F%2Fevil.example%2Fx")
    assert run(wrapped, rules=rules) == (EVIL, {"wrapper": 1})
    saml = url("https://sso.corp.example/tenant/saml/login")
    assert run(saml, rules=rules) == ([], {"protected_endpoint": 1, "protected_host": 1})


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (".co.uk", "public_suffix"),
        ("github.io", "public_suffix"),
        ("www.google.com/url", "wrapper"),
        ("linkprotect.cudasvc.com", "wrapper"),
        ("drive.google.com/uc", "protected_endpoint"),
        ("1.0.0.0/8", "ip_range"),
        ("8.8.8.8", "protected_host"),
        (".partner.example", "covers_allowed"),
        ("a.partner.example/x", "allowed"),
        ("evil.example/x", None),
        (".evil.example", None),
        ("evil.example:8443", None),
    ],
)
def test_entries_pushed_earlier_are_judged_by_today_s_rules(entry: str, reason: str | None) -> None:
    """An entry in the category is withdrawn for the reason today's rules would skip it."""
    extractor = Extractor(BOTH, allow=["login.partner.example", "a.partner.example"])
    assert extractor.withdrawn(entry) == reason


@pytest.mark.parametrize("spec", ["query:", "path:x", "rot13", ""])
def test_unknown_decoders_are_refused(spec: str) -> None:
    """A data line naming a decoder that does not exist fails loudly when the rules load."""
    with pytest.raises(ValueError, match="unknown decoder"):
        decoder_for(spec)
