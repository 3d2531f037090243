"""The configuration's part of what is never blocked: allow entries, and the rule additions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.config.test_config import VALID
from threatshare import config
from threatshare.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def load(tmp_path: Path, settings: str = "", instance: str = "") -> config.Config:
    text = VALID.replace("[settings]\n", "[settings]\n" + settings) + instance
    path = tmp_path / "t.toml"
    path.write_text(text, "utf-8")
    return config.load(path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("10.0.0.0/8", "address range"),
        ("2001:db8::/32", "address range"),
        ("http://1.0.0.0/8", "address range"),
        ("*", "'*' is not an entry"),
        ("*.partner.example", "'*' is not an entry"),
        ("  ", "empty entry"),
    ],
)
def test_allow_entries_that_are_not_entries_are_errors(
    tmp_path: Path, entry: str, message: str
) -> None:
    """A range, a pattern or nothing in ``allow`` is a configuration error that says why."""
    with pytest.raises(ConfigError) as err:
        load(tmp_path, instance=f'allow = ["{entry}"]\n')
    assert any("instances.urls.allow" in p and message in p for p in err.value.problems)


def test_allow_takes_hosts_urls_and_zia_entries(tmp_path: Path) -> None:
    """Hosts, URLs and ZIA entries are all accepted in ``allow``."""
    allow = '["partner.example", "https://Partner.example/", ".supplier.example", "93.184.216.34"]'
    loaded = load(tmp_path, instance=f"allow = {allow}\n")
    assert len(loaded.instances["urls"].allow) == 4


def test_rule_additions_are_checked_for_their_form(tmp_path: Path) -> None:
    """Wrappers and endpoints in settings must have the data files' form; verdicts are names."""
    good = (
        'wrappers = ["go.corp.example/r query:dest", "t.corp.example opaque"]\n'
        'protected_endpoints = ["sso.corp.example/*/saml"]\n'
        'policy_verdicts = ["Blocked archive"]\n'
    )
    loaded = load(tmp_path, settings=good)
    assert loaded.settings.wrappers[0] == "go.corp.example/r query:dest"
    with pytest.raises(ConfigError) as err:
        load(
            tmp_path,
            settings='wrappers = ["go.corp.example/r rot13"]\n'
            'protected_endpoints = ["sso.corp.example"]\n',
        )
    problems = "\n".join(err.value.problems)
    assert "settings.wrappers" in problems and "DECODER" in problems
    assert "settings.protected_endpoints" in problems


def test_check_shows_a_line_per_rule_set(tmp_path: Path) -> None:
    """``threatshare check`` prints each rule set's version, counts and configured additions."""
    path = tmp_path / "t.toml"
    path.write_text(
        VALID.replace("[settings]\n", '[settings]\nprotected_hosts = ["files.corp.example"]\n'),
        "utf-8",
    )
    path.chmod(0o600)
    done = subprocess.run(
        [sys.executable, "-m", "threatshare", "--config", str(path), "check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rules = [line for line in done.stdout.splitlines() if line.startswith("rules: ")]
    assert len(rules) == 5
    assert "1 from settings.protected_hosts" in done.stdout
    assert "publicsuffixlist" in done.stdout
