"""End to end through a run against the emulators: what must never be blocked stays out of the
category, the threat a wrapper carried goes in, and a change of the rules withdraws what they
no longer allow (docs/design.md#what-is-never-blocked)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

from tests.e2e import World
from threatshare.indicators import rules as rules_module
from threatshare.indicators.evidence import url_evidence
from threatshare.ops.status import collect
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import impersonation_log, url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.ledger import Ledger
from threatshare.state.store import Store
from threatshare.state.unblocked import UnblockList
from threatshare.sync.pipeline import Run

URLS = {
    "urls": {
        "zia": "prod",
        "category": "Threat URLs",
        "sources": ["malicious_urls", "url_domains"],
        "allow": ["https://Partner.example/"],
    }
}
SENDERS = {
    "senders": {
        "zia": "prod",
        "category": "Look-alike Senders",
        "sources": ["malicious_domains"],
        "allow": ["login.partner.example"],
    }
}


def google(target: str) -> str:
    return "https://www.google.com/url?q=" + quote(target, safe="")


# Each wrapped URL carries a threat of its own: (wrapped, the threat's URL entry, its host).
WRAPPED = [
    (google("https://one.evil.example/a"), "one.evil.example/a", "one.evil.example"),
    (
        "https://WWW.GOOGLE.COM/url?q=https://two.evil.example/b",
        "two.evil.example/b",
        "two.evil.example",
    ),
    (
        "https://ｗｗｗ.ｇｏｏｇｌｅ.com/url?q=https://three.evil.example/c",
        "three.evil.example/c",
        "three.evil.example",
    ),
    (
        "https://NAM02.SafeLinks.Protection.Outlook.com/?url=https%3A%2F%2Ffour.evil.example%2Fd"
        "&data=05",
        "four.evil.example/d",
        "four.evil.example",
    ),
    (
        "https://urldefense.proofpoint.com/v2/url?u=https-3A__five.evil.example_e&d=DwM",
        "five.evil.example/e",
        "five.evil.example",
    ),
    (
        "https://urldefense.com/v3/__https://six.evil.example*f__;Lw!!CQl3mcHX!x$",
        "six.evil.example/f",
        "six.evil.example",
    ),
    (
        "https://linkprotect.cudasvc.com/url?a=https%3a%2f%2fseven.evil.example%2fg&c=E",
        "seven.evil.example/g",
        "seven.evil.example",
    ),
    (
        "https://secure-web.cisco.com/1TokEn/https%3A%2F%2Feight.evil.example%2Fh",
        "eight.evil.example/h",
        "eight.evil.example",
    ),
    (
        "https://l.facebook.com/l.php?u=https%3A%2F%2Fnine.evil.example%2Fi&h=AT",
        "nine.evil.example/i",
        "nine.evil.example",
    ),
    (
        google(google(google("https://ten.evil.example/j"))),
        "ten.evil.example/j",
        "ten.evil.example",
    ),
]
# Never in the category, whatever the record says.
DANGEROUS_URLS = [
    google(google(google(google("https://deep.evil.example/k")))),  # four levels: no entry
    google("https://drive.google.com/uc?export=download&id=X"),  # target protected
    "https://protect-eu.mimecast.com/s/AbC?domain=evil.example",  # opaque wrapper
    "https://drive.google.com/uc?export=download&id=Y",
    "https://login.microsoftonline.com/common/oauth2/v2.0/authorize?client_id=1&scope=x",
    "https://login.microsoftonline.com/contoso.example/oauth2/v2.0/authorize",
    "https://co.uk/",
    "https://github.io/",
    "https://s3.amazonaws.com/",
    "https://8.8.8.8/",
    "https://1.1.1.1/dns-query",
    "https://a.partner.example/x",
]
NEVER = {
    "www.google.com/url",
    "www.google.com",
    "nam02.safelinks.protection.outlook.com",
    "urldefense.proofpoint.com/v2/url",
    "urldefense.proofpoint.com",
    "urldefense.com",
    "linkprotect.cudasvc.com/url",
    "linkprotect.cudasvc.com",
    "secure-web.cisco.com",
    "l.facebook.com/l.php",
    "l.facebook.com",
    "protect-eu.mimecast.com",
    "drive.google.com/uc",
    "drive.google.com",
    "deep.evil.example/k",
    "deep.evil.example",
    "login.microsoftonline.com/common/oauth2/v2.0/authorize",
    "login.microsoftonline.com/contoso.example/oauth2/v2.0/authorize",
    "login.microsoftonline.com",
    "co.uk",
    "github.io",
    "s3.amazonaws.com",
    "8.8.8.8",
    "1.1.1.1/dns-query",
    "1.1.1.1",
    "oneclient.sfx.ms/win/preview/onedrivesetup.exe",
    "oneclient.sfx.ms",
    "a.partner.example/x",
    "a.partner.example",
    "1.0.0.0/8",
    ".co.uk",
    ".github.io",
    ".gmail.com",
    ".partner.example",
    ".unblocked-parent.example",
}


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[World]:
    with Sandbox(tenant_names=("prod",)) as sandbox:
        yield World(sandbox, tmp_path, redis_url)


def seed(world: World, at: datetime | None = None) -> None:
    at = at or datetime.now(UTC) - timedelta(hours=1)
    urls = [w for w, _, _ in WRAPPED] + DANGEROUS_URLS
    records = [url_log(u, at + timedelta(seconds=i)) for i, u in enumerate(urls)]
    records += [
        url_log(
            "https://oneclient.sfx.ms/Win/Preview/OneDriveSetup.exe",
            at,
            category="Dangerous file extension",
            tagMap={"DangerousFileExt": {"Status": ["Block"]}},
        ),
        url_log("https://s3.amazonaws.com/evil-bucket/p.html", at),
        url_log("https://evil-bucket.s3.amazonaws.com/", at),
        url_log("http://1.0.0.0/8", at),
    ]
    world.sandbox.mimecast.add_url_logs(records)
    senders = [
        "x@co.uk",
        "x@github.io",
        "ceo@mail.look-alike.example",
        "x@gmail.com",
        "x@partner.example",
        "x@evil.github.io",
        "x@unblocked-parent.example",
    ]
    world.sandbox.mimecast.add_impersonation_logs(
        impersonation_log(s, at, ["similar_internal_domain"]) for s in senders
    )


def test_wrapped_threats_go_in_and_what_is_shared_stays_out(world: World) -> None:
    """Every wrapped threat is in the category, unwrapped; no wrapper, platform endpoint,
    suffix, policy verdict or allowed host is, and each skip is counted with its reason."""
    seed(world)
    config = world.config(URLS)
    results = world.run(config)
    assert results["urls"].outcome == "ok"
    active = world.active(config, "urls")
    for _, entry, host in WRAPPED:
        assert {entry, host} <= active
    assert {
        "s3.amazonaws.com/evil-bucket/p.html",
        "evil-bucket.s3.amazonaws.com",
        "1.0.0.0",
    } <= active
    assert not active & NEVER
    skipped = results["urls"].counters["skipped_by_reason"]
    for reason in (
        "wrapper",
        "policy_verdict",
        "protected_query",
        "protected_endpoint",
        "public_suffix",
        "protected_host",
        "allowed",
    ):
        assert skipped.get(reason), reason
    status = collect(config, Store(redis.Redis.from_url(world.redis_url)), "urls")[0]
    assert status["last_run"]["skipped_by_reason"]["wrapper"] == skipped["wrapper"]


def test_senders_go_in_as_registrable_domains_never_over_what_is_allowed(world: World) -> None:
    """Look-alike senders become their registrable domain; suffixes, free mail, wildcards over
    an allowed host or over an unblocked one are never pushed."""
    seed(world)
    config = world.config(SENDERS)
    client = redis.Redis.from_url(world.redis_url)
    UnblockList(client, "senders").add(
        ["login.unblocked-parent.example"], datetime.now(UTC), "partner portal", "soc"
    )
    results = world.run(config)
    assert results["senders"].outcome == "ok"
    active = world.active(config, "senders")
    assert active == {".look-alike.example", ".evil.github.io"}
    skipped = results["senders"].counters["skipped_by_reason"]
    assert skipped["public_suffix"] == 2
    assert skipped["protected_host"] == 1
    assert skipped["covers_allowed"] == 2  # one over allow, one over the runtime allow list


def test_a_record_from_the_future_counts_as_seen_at_the_window_s_end(world: World) -> None:
    """A record dated in 2099 is staged at the window's end: no date from upstream can keep
    its entry from expiring."""
    config = world.config(URLS)
    client = redis.Redis.from_url(world.redis_url)
    run = Run(Runtime(config, client), "urls", dry_run=False)
    end = datetime.now(UTC).timestamp()
    page = [url_log("https://future.evil.example/x", "2099-01-01T00:00:00+0000")]
    run.take_page(page, run.extractor.url_record, "date", end, url_evidence)
    run.write_met()
    staged = dict(Ledger(client).staged_oldest(run.staging, 10))
    assert staged == {"future.evil.example/x": end, "future.evil.example": end}


@pytest.mark.parametrize("date", [None, 17, "", "yesterday", "2026-13-45T00:00:00+0000", [1]])
def test_a_record_without_a_readable_date_counts_as_seen_at_the_window_s_end(
    world: World, date: object
) -> None:
    """A record whose date is missing, not text or not a date is shared all the same, seen at
    the window's end."""
    config = world.config(URLS)
    client = redis.Redis.from_url(world.redis_url)
    run = Run(Runtime(config, client), "urls", dry_run=False)
    end = datetime.now(UTC).timestamp()
    record = url_log("https://undated.evil.example/x", datetime.now(UTC))
    if date is None:
        del record["date"]
    else:
        record["date"] = date
    run.take_page([record], run.extractor.url_record, "date", end, url_evidence)
    run.write_met()
    staged = dict(Ledger(client).staged_oldest(run.staging, 10))
    assert staged == {"undated.evil.example/x": end, "undated.evil.example": end}


def _upgraded_data(tmp_path: Path) -> Path:
    data = tmp_path / "upgraded-data"
    shutil.copytree(Path(rules_module.__file__).parent / "data", data)
    hosts = data / "protected_hosts.txt"
    text = hosts.read_text("utf-8").replace("# version: 2026-12-06", "# version: 2027-01-01")
    hosts.write_text(text + "\n# A platform newly shared\none.evil.example\n", "utf-8")
    wrappers = data / "wrappers.txt"
    wrappers.write_text(wrappers.read_text("utf-8") + "\ntwo.evil.example opaque\n", "utf-8")
    return data


def test_an_upgrade_of_the_shipped_rules_withdraws_what_they_no_longer_allow(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the shipped data changes, the next run removes the entries it would not push,
    and status counts them as withdrawn; a run after that withdraws nothing more."""
    seed(world)
    config = world.config(URLS)
    world.run(config)
    assert {"one.evil.example", "two.evil.example", "two.evil.example/b"} <= world.active(
        config, "urls"
    )
    monkeypatch.setattr(rules_module, "DATA_DIR", _upgraded_data(tmp_path))
    results = world.run(config)
    counters = results["urls"].counters
    assert counters["withdrawn_by_reason"] == {"protected_host": 1, "wrapper": 2}
    active = world.active(config, "urls")
    assert not {"one.evil.example", "two.evil.example", "two.evil.example/b"} & active
    assert "one.evil.example/a" in active  # a path entry on a protected host stays
    status = collect(config, Store(redis.Redis.from_url(world.redis_url)), "urls")[0]
    assert status["last_run"]["withdrawn"] == 3
    assert world.run(config)["urls"].counters["withdrawn"] == 0


def test_a_change_of_the_configured_rules_withdraws_too(world: World) -> None:
    """Adding a protected host or a policy-free allow entry in configuration withdraws."""
    seed(world)
    config = world.config(URLS)
    world.run(config)
    assert "three.evil.example" in world.active(config, "urls")
    changed = world.config(URLS, settings={"protected_hosts": ["three.evil.example"]})
    results = world.run(changed)
    assert results["urls"].counters["withdrawn_by_reason"] == {"protected_host": 1}
    assert "three.evil.example" not in world.active(changed, "urls")
    allowed = {"urls": {**URLS["urls"], "allow": ["https://Partner.example/", "four.evil.example"]}}
    config = world.config(allowed, settings={"protected_hosts": ["three.evil.example"]})
    results = world.run(config)
    assert results["urls"].counters["withdrawn_by_reason"] == {"allowed": 2}
    assert not {"four.evil.example", "four.evil.example/d"} & world.active(config, "urls")


def test_a_policy_verdict_added_to_the_shipped_data_withdraws_what_was_pushed_for_it(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry pushed for a verdict the data then names a policy is withdrawn, read from its
    provenance; one that a threat verdict also produced stays."""
    at = datetime.now(UTC) - timedelta(hours=1)
    world.sandbox.mimecast.add_url_logs(
        [
            url_log("https://files.vendor.example/setup.exe", at, category="Blocked Archive"),
            url_log("https://mixed.evil.example/a", at, category="Blocked Archive"),
            url_log("https://mixed.evil.example/a", at + timedelta(seconds=5)),
            url_log("https://plain.evil.example/b", at),
        ]
    )
    config = world.config(URLS)
    world.run(config)
    assert "files.vendor.example/setup.exe" in world.active(config, "urls")
    data = _upgraded_data(tmp_path)
    verdicts = data / "policy_verdicts.txt"
    verdicts.write_text(verdicts.read_text("utf-8") + "Blocked archive\n", "utf-8")
    monkeypatch.setattr(rules_module, "DATA_DIR", data)
    results = world.run(config)
    withdrawn = results["urls"].counters["withdrawn_by_reason"]
    assert withdrawn["policy_verdict"] == 2  # the URL and its host
    active = world.active(config, "urls")
    assert not {"files.vendor.example/setup.exe", "files.vendor.example"} & active
    assert {"mixed.evil.example/a", "plain.evil.example/b"} <= active
