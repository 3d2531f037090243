"""The rule sets as data: shipped versioned, extended by configuration, shown by check, and
digested so that a change of any of them is seen."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from threatshare.config import Config
from threatshare.indicators import rules as rules_module
from threatshare.indicators.extract import Extractor, Tally
from threatshare.indicators.rules import DATA_FILES, Rules, rules_digest, shipped_data


def config(**settings: object) -> Config:
    return Config.model_validate(
        {
            "settings": settings,
            "mimecast": {"main": {"client_id": "a", "client_secret": "b"}},
            "zia": {"prod": {"cloud": "zscloud.net"}},
            "instances": {
                "x": {
                    "mimecast": "main",
                    "zia": "prod",
                    "category": "X",
                    "sources": ["malicious_urls"],
                    "allow": ["partner.example"],
                },
            },
        }
    )


def copy_data(tmp_path: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(Path(rules_module.__file__).parent / "data", target)
    return target


def test_every_data_file_is_versioned_and_read() -> None:
    """Each shipped rule set has a version line and rules."""
    data = shipped_data()
    assert set(data) == set(DATA_FILES)
    for name, file in data.items():
        assert file.version != "unversioned", name
        assert file.lines, name
        assert not any(line.startswith("#") for line in file.lines)


def test_every_shipped_line_loads() -> None:
    """Every line of every file is understood (hosts shaped, decoders known)."""
    rules = Rules()
    assert len(rules.protected) >= 90
    assert {"gmail.com", "8.8.8.8", "1.1.1.1", "9.9.9.9", "1.0.0.1"} <= rules.protected
    assert "login.microsoftonline.com" in rules.endpoints
    assert {"safelinks.protection.outlook.com", "urldefense.com", "mimecast.com"} <= set(
        rules.wrappers
    )
    assert "dangerousfileextension" in rules.verdicts


def test_summary_has_a_line_per_rule_set_with_additions() -> None:
    """check's lines name each rule set, its version, its size and the configured additions."""
    lines = Rules(
        protected_hosts=["a.example", "b.example"], wrappers=["w.example query:u"]
    ).summary()
    assert len(lines) == 5
    text = "\n".join(lines)
    for name in (
        "public suffixes",
        "protected hosts",
        "shared endpoints",
        "wrappers",
        "policy verdicts",
    ):
        assert name in text
    assert "2 from settings.protected_hosts" in text
    assert "1 from settings.wrappers" in text
    assert shipped_data()["wrappers"].version in text


def test_the_digest_follows_configuration_and_allow() -> None:
    """Adding to any settings list or to the instance's allow changes the digest."""
    base = rules_digest(config(), "x")
    assert rules_digest(config(), "x") == base
    for changed in (
        config(protected_hosts=["files.corp.example"]),
        config(policy_verdicts=["Blocked archive"]),
        config(wrappers=["go.corp.example/r query:u"]),
        config(protected_endpoints=["sso.corp.example/*/saml"]),
    ):
        assert rules_digest(changed, "x") != base
    widened = config().model_copy(deep=True)
    allow = widened.instances["x"].allow
    allow.append("other.example")
    assert rules_digest(widened, "x") != base


def test_an_upgrade_of_the_shipped_data_changes_digest_and_decisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edited shipped data (as an upgrade brings) is read, changes the digest and the rules."""
    base = rules_digest(config(), "x")
    data = copy_data(tmp_path)
    hosts = data / "protected_hosts.txt"
    hosts.write_text(hosts.read_text("utf-8") + "\nnewly-shared.example\n", "utf-8")
    monkeypatch.setattr(rules_module, "DATA_DIR", data)
    assert rules_digest(config(), "x") != base
    extractor = Extractor(["malicious_urls"])
    tally = Tally()
    record = {"url": "https://newly-shared.example/", "scanResult": "malicious"}
    assert extractor.url_record(record, tally) == ()
    assert tally.skipped == {"protected_host": 1}
    assert extractor.withdrawn("newly-shared.example") == "protected_host"


def test_a_broken_data_line_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrapper line with an unknown decoder stops the rules from loading at all."""
    data = copy_data(tmp_path)
    (data / "wrappers.txt").write_text("# version: broken\nx.example rot13\n", "utf-8")
    monkeypatch.setattr(rules_module, "DATA_DIR", data)
    with pytest.raises(ValueError, match="unknown decoder"):
        Rules()
