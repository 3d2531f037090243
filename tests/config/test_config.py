"""Configuration loading and validation (docs/design.md#configuration)."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from threatshare import config
from threatshare.errors import ConfigError
from threatshare.fingerprint import fingerprint

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "threatshare.toml"

VALID = """
[settings]
redis_url = "redis://:RedisPass9@127.0.0.1:6379/0"
admins = ["soc@example.com"]

[mimecast.main]
base_url = "https://api.services.mimecast.com"
client_id = "mc-id"
client_secret = "McSecret-1"

[zia.prod]
cloud = "zscloud.net"
auth = "oauth"
token_url = "https://idp.example.com/oauth2/v1/token"
client_id = "zia-id"
client_secret = "ZiaSecret-2"
scope = "zscloud.net::1::Role"

[instances.urls]
mimecast = "main"
zia = "prod"
category = "Mimecast URLs"
sources = ["malicious_urls", "url_domains"]
"""

# Five different mistakes, and two secrets that must never be echoed.
FIVE_MISTAKES = """
[settings]
interval = "5s"

[mimecast.main]
base_url = "http://api.example.com"
client_id = "mc-id"
client_secret = "LeakMe-Secret-A"

[zia.prod]
cloud = "zscloud.net"
auth = "legacy"
username = "admin@example.com"
password = "LeakMe-Secret-B"
api_key = "LeakMe-Secret-C"

[instances.urls]
mimecast = "main"
zia = "prod"
category = "Bad*Name"
sources = ["url_domains"]
notify = ["not-an-address"]
"""


def write(tmp_path: Path, text: str, name: str = "t.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threatshare.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )


class TestLoad:
    def test_valid_file_loads_with_defaults(self, tmp_path: Path) -> None:
        """A minimal valid file gets the defaults of docs/design.md#configuration and derives the
        ZIA API base from the cloud."""
        cfg = config.load(write(tmp_path, VALID))
        assert cfg.settings.interval == timedelta(seconds=60)
        assert cfg.settings.overlap == timedelta(minutes=5)
        assert cfg.settings.settle == timedelta(seconds=5)  # overlap re-reads late records
        assert cfg.instances["urls"].batch_size == 5000
        assert cfg.zia["prod"].resolved_api_base == "https://zsapi.zscloud.net/api/v1"
        assert cfg.mimecast["main"].token_url == "https://api.services.mimecast.com/oauth/token"

    def test_environment_overrides_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """THREATSHARE_<SECTION>__<NAME>__<KEY> overrides the file, case-insensitively."""
        monkeypatch.setenv("THREATSHARE_ZIA__PROD__CLIENT_SECRET", "FromEnv-3")
        monkeypatch.setenv("threatshare_instances__urls__batch_size", "250")
        cfg = config.load(write(tmp_path, VALID))
        assert cfg.zia["prod"].client_secret is not None
        assert cfg.zia["prod"].client_secret.get_secret_value() == "FromEnv-3"
        assert cfg.instances["urls"].batch_size == 250

    def test_secret_files_fill_nested_secrets(self, tmp_path: Path) -> None:
        """A file in secrets_dir named like the variable supplies a secret missing from TOML."""
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        (secrets / "threatshare_mimecast__main__client_secret").write_text("FromFile-4")
        text = VALID.replace('client_secret = "McSecret-1"\n', "").replace(
            "[settings]\n", f'[settings]\nsecrets_dir = "{secrets}"\n'
        )
        cfg = config.load(write(tmp_path, text))
        assert cfg.mimecast["main"].client_secret.get_secret_value() == "FromFile-4"

    def test_missing_secrets_dir_is_a_problem(self, tmp_path: Path) -> None:
        """A secrets_dir that does not exist is reported, not silently ignored."""
        text = VALID.replace("[settings]\n", '[settings]\nsecrets_dir = "/nonexistent/xyz"\n')
        with pytest.raises(ConfigError) as err:
            config.load(write(tmp_path, text))
        assert err.value.problems == ["settings.secrets_dir: directory does not exist"]

    def test_missing_file_and_bad_toml(self, tmp_path: Path) -> None:
        """A missing file and a TOML syntax error each give one clear problem."""
        with pytest.raises(ConfigError, match="not found"):
            config.load(tmp_path / "absent.toml")
        with pytest.raises(ConfigError, match="not valid TOML"):
            config.load(write(tmp_path, "[settings\n"))

    @pytest.mark.parametrize(
        ("patch", "expected"),
        [
            (("[instances.urls]", "[instances.Urls]"), "instances.Urls: name must match"),
            (('zia = "prod"', 'zia = "nope"'), "instances.urls.zia: no [zia.nope] table"),
            (('scope = "zscloud.net::1::Role"\n', ""), "zia.prod.scope: required when auth"),
            (
                ('category = "Mimecast URLs"', 'category = "a/b"'),
                "instances.urls.category: may use",
            ),
            (("[instances.urls]", '[instances.urls]\nfetch_from = "31d"'), "fetch_from: must be"),
            (("[instances.urls]", "[instances.urls]\nbatch_size = 0"), "batch_size: Input should"),
            (("[instances.urls]", "[instances.urls]\nbatch_size = 10001"), "batch_size: Input"),
            (('sources = ["malicious_urls", "url_domains"]', "sources = []"), "sources: List"),
            (("[settings]", '[settings]\nsettle = "0s"\ninterval = "9s"'), "interval: must be"),
            (("[settings]", '[settings]\nlog_format = "xml"'), "settings.log_format: Input"),
            (('auth = "oauth"', 'auth = "kerberos"'), "zia.prod.auth: Input should be"),
        ],
    )
    def test_each_rule_reported_with_its_path(
        self, tmp_path: Path, patch: tuple[str, str], expected: str
    ) -> None:
        """Each rule (docs/design.md#configuration) is enforced and reported with its dotted
        path."""
        with pytest.raises(ConfigError) as err:
            config.load(write(tmp_path, VALID.replace(*patch)))
        assert any(expected in p for p in err.value.problems), err.value.problems

    def test_urls_with_userinfo_are_refused(self, tmp_path: Path) -> None:
        """An upstream URL carrying a user name and password is refused, without echoing it."""
        text = VALID.replace(
            "https://api.services.mimecast.com", "https://someone:Hidden-77@api.example.com"
        )
        with pytest.raises(ConfigError) as err:
            config.load(write(tmp_path, text))
        (problem,) = err.value.problems
        assert problem.startswith("mimecast.main.base_url:") and "user name" in problem
        assert "Hidden-77" not in problem

    def test_settle_zero_and_loopback_http_are_allowed(self, tmp_path: Path) -> None:
        """settle may be 0s; plain http is allowed to a loopback host only."""
        text = VALID.replace("[settings]", '[settings]\nsettle = "0s"').replace(
            "https://api.services.mimecast.com", "http://127.0.0.1:8080"
        )
        cfg = config.load(write(tmp_path, text))
        assert cfg.settings.settle == timedelta(0)
        assert cfg.mimecast["main"].base_url == "http://127.0.0.1:8080"

    def test_two_instances_may_not_share_a_category_on_one_tenant(self, tmp_path: Path) -> None:
        """Two instances on one ZIA tenant with the same category name are refused."""
        text = VALID + VALID[VALID.index("[instances.urls]") :].replace("urls]", "copy]")
        with pytest.raises(ConfigError) as err:
            config.load(write(tmp_path, text))
        assert err.value.problems == [
            "instances.copy.category: 'Mimecast URLs' is already used by instance 'urls' "
            "on ZIA tenant 'prod'"
        ]


class TestCheckCommand:
    def test_example_configuration_is_valid(self) -> None:
        """`threatshare check --config examples/threatshare.toml` exits 0 once its placeholder
        secrets come from the environment, and exits 2 naming each while they do not."""
        import os

        placeholders = run_cli("--config", str(EXAMPLE), "check")
        assert placeholders.returncode == 2
        assert "smtp.password: is a placeholder" in placeholders.stderr
        env = {
            **os.environ,
            "THREATSHARE_SMTP__PASSWORD": "Smtp-Real-1",
            "THREATSHARE_MIMECAST__MAIN__CLIENT_SECRET": "Mc-Real-2",
            "THREATSHARE_ZIA__PROD__CLIENT_SECRET": "Zia-Real-3",
        }
        result = run_cli("--config", str(EXAMPLE), "check", env=env)
        assert result.returncode == 0, result.stderr
        assert "valid" in result.stdout

    def test_five_mistakes_give_five_lines_and_exit_2_without_secrets(self, tmp_path: Path) -> None:
        """Five different mistakes print five lines with dotted paths, exit 2, show no secret."""
        path = write(tmp_path, FIVE_MISTAKES)
        result = run_cli("--config", str(path), "check")
        assert result.returncode == 2
        lines = [ln.strip() for ln in result.stderr.splitlines()[1:] if ln.strip()]
        assert len(lines) == 5, result.stderr
        paths = sorted(line.split(":", 1)[0] for line in lines)
        assert paths == [
            "instances.urls.category",
            "instances.urls.notify.0",
            "instances.urls.sources",
            "mimecast.main.base_url",
            "settings.interval",
        ]
        assert "LeakMe" not in result.stdout + result.stderr

    def test_config_from_environment_variable_path(self, tmp_path: Path) -> None:
        """Without --config, $THREATSHARE_CONFIG names the file."""
        import os

        env = {**os.environ, "THREATSHARE_CONFIG": str(write(tmp_path, VALID))}
        result = run_cli("check", env=env)
        assert result.returncode == 0, result.stderr

    @pytest.mark.parametrize(
        ("url", "warned"),
        [
            ("redis://:RedisPass9@redis.example.com:6379/0", True),
            ("redis://user:RedisPass9@10.0.0.5/0", True),
            ("rediss://:RedisPass9@redis.example.com:6380/0", False),
            ("redis://:RedisPass9@127.0.0.1:6379/0", False),
            ("redis://:RedisPass9@localhost:6379/0", False),
            ("redis://redis.example.com:6379/0", False),
        ],
    )
    def test_password_over_plain_redis_warned(self, tmp_path: Path, url: str, warned: bool) -> None:
        """`check` warns when a Redis password would go over plain redis:// to a host that is
        not loopback, and names the host but not the password."""
        text = VALID.replace("redis://:RedisPass9@127.0.0.1:6379/0", url)
        path = write(tmp_path, text)
        path.chmod(0o600)
        result = run_cli("--config", str(path), "check")
        assert result.returncode == 0, result.stderr
        assert ("rediss://" in result.stdout) is warned, result.stdout
        assert "RedisPass9" not in result.stdout + result.stderr

    def test_world_readable_secrets_warned(self, tmp_path: Path) -> None:
        """A world-readable file holding secrets gets a warning from `check`."""
        path = write(tmp_path, VALID)
        path.chmod(0o644)
        result = run_cli("--config", str(path), "check")
        assert result.returncode == 0
        assert "world-readable" in result.stdout


class TestFingerprint:
    def test_changes_with_credentials_and_settings(self, tmp_path: Path) -> None:
        """A new secret or a changed instance setting changes the fingerprint; nothing else does."""
        base = fingerprint(config.load(write(tmp_path, VALID)), "urls")
        same = fingerprint(config.load(write(tmp_path, VALID, "b.toml")), "urls")
        rotated = fingerprint(
            config.load(write(tmp_path, VALID.replace("ZiaSecret-2", "ZiaSecret-9"), "c.toml")),
            "urls",
        )
        assert base == same
        assert rotated != base
        assert "ZiaSecret" not in base

    def test_a_guess_of_one_secret_cannot_be_checked_without_the_others(
        self, tmp_path: Path
    ) -> None:
        """Whoever reads Redis and knows every non-secret setting and the right ZIA secret
        among their guesses still cannot reproduce the fingerprint without the Mimecast secret:
        it is keyed by the instance's secrets together."""
        stored = fingerprint(config.load(write(tmp_path, VALID)), "urls")
        guesses = [
            fingerprint(
                config.load(
                    write(
                        tmp_path,
                        VALID.replace("ZiaSecret-2", zia).replace("McSecret-1", mimecast),
                        f"{zia}-{mimecast}.toml",
                    )
                ),
                "urls",
            )
            for zia in ("ZiaSecret-1", "ZiaSecret-2", "ZiaSecret-3")
            for mimecast in ("McGuess-1", "McGuess-2")
        ]
        assert stored not in guesses
        rotated = VALID.replace("McSecret-1", "McSecret-7")
        assert fingerprint(config.load(write(tmp_path, rotated, "m.toml")), "urls") != stored


def test_durations_for_people_keep_the_largest_units() -> None:
    """format_duration spells exactly by default; with largest=2 it shows the two biggest units."""
    from datetime import timedelta

    from threatshare.durations import format_duration

    value = timedelta(days=3, hours=4, minutes=5, seconds=6)
    assert format_duration(value) == "3d4h5m6s"
    assert format_duration(value, largest=2, sep=" ") == "3d 4h"
    assert format_duration(timedelta(seconds=-5)) == "0s"


class TestLifecycleKeys:
    def test_defaults(self, tmp_path: Path) -> None:
        """Without lifecycle keys: reconcile daily, keep 5% of the quota, warn at 80%, expire
        after 30 days, no cap."""
        cfg = config.load(write(tmp_path, VALID))
        assert cfg.settings.reconcile_every == timedelta(hours=24)
        assert cfg.zia["prod"].quota_reserve == "5%"
        assert cfg.zia["prod"].quota_warn == 80
        assert cfg.instances["urls"].expire_after == timedelta(days=30)
        assert cfg.instances["urls"].max_entries is None

    @pytest.mark.parametrize(
        ("value", "expected"), [("500", 500), ("2.5%", "2.5%"), ("0", 0), (" 10 % ", "10%")]
    )
    def test_quota_reserve_is_a_count_or_a_share(
        self, tmp_path: Path, value: str, expected: int | str
    ) -> None:
        """quota_reserve takes a count (also as text) or a percentage of the quota."""
        text = VALID.replace(
            'scope = "zscloud.net', f'quota_reserve = "{value}"\nscope = "zscloud.net'
        )
        assert config.load(write(tmp_path, text)).zia["prod"].quota_reserve == expected

    def test_never_and_a_cap(self, tmp_path: Path) -> None:
        """expire_after = "0" means never; max_entries caps the category."""
        text = VALID.replace(
            "[instances.urls]", '[instances.urls]\nexpire_after = "0"\nmax_entries = 20000'
        )
        inst = config.load(write(tmp_path, text)).instances["urls"]
        assert inst.expire_after == timedelta(0)
        assert inst.max_entries == 20000

    @pytest.mark.parametrize(
        ("patch", "expected"),
        [
            (
                ("[settings]", '[settings]\nreconcile_every = "30s"'),
                "settings.reconcile_every: must be at least 1m",
            ),
            (
                ("[settings]", '[settings]\nreconcile_every = "daily"'),
                "settings.reconcile_every: must be a duration",
            ),
            (
                ('scope = "zscloud.net', 'quota_reserve = "lots"\nscope = "zscloud.net'),
                "zia.prod.quota_reserve: must be a count such as 500 or a share such as '5%'",
            ),
            (
                ('scope = "zscloud.net', 'quota_reserve = "100%"\nscope = "zscloud.net'),
                "zia.prod.quota_reserve: must be a share below 100%",
            ),
            (
                ('scope = "zscloud.net', 'quota_reserve = -1\nscope = "zscloud.net'),
                "zia.prod.quota_reserve: must not be negative",
            ),
            (
                ('scope = "zscloud.net', 'quota_warn = 0\nscope = "zscloud.net'),
                "zia.prod.quota_warn: Input should be greater than or equal to 1",
            ),
            (
                ('scope = "zscloud.net', 'quota_warn = 101\nscope = "zscloud.net'),
                "zia.prod.quota_warn: Input should be less than or equal to 100",
            ),
            (
                ("[instances.urls]", '[instances.urls]\nexpire_after = "10m"'),
                'instances.urls.expire_after: must be "0" (never) or at least 1h',
            ),
            (
                ("[instances.urls]", '[instances.urls]\nexpire_after = "soon"'),
                "instances.urls.expire_after: must be a duration",
            ),
            (
                ("[instances.urls]", "[instances.urls]\nmax_entries = 0"),
                "instances.urls.max_entries: Input should be greater than or equal to 1",
            ),
        ],
    )
    def test_each_bad_value_has_a_clear_message(
        self, tmp_path: Path, patch: tuple[str, str], expected: str
    ) -> None:
        """Each lifecycle key is validated, reported with its dotted path and what it takes."""
        with pytest.raises(ConfigError) as err:
            config.load(write(tmp_path, VALID.replace(*patch)))
        assert any(p.startswith(expected) for p in err.value.problems), err.value.problems

    def test_growing_for_ever_is_warned(self, tmp_path: Path) -> None:
        """`check` warns about an instance that never expires and has no cap."""
        text = VALID.replace("[instances.urls]", '[instances.urls]\nexpire_after = "0"')
        path = write(tmp_path, text)
        warnings = config.warnings_for(path, config.load(path))
        assert any(w.startswith("instances.urls.expire_after: 0 (never)") for w in warnings)

    def test_example_documents_every_lifecycle_key(self) -> None:
        """examples/threatshare.toml sets each lifecycle key (docs/design.md#expiry), with a
        comment."""
        text = EXAMPLE.read_text()
        for key in (
            "reconcile_every",
            "quota_reserve",
            "quota_warn",
            "expire_after",
            "max_entries",
        ):
            line = next(line for line in text.splitlines() if line.lstrip("# ").startswith(key))
            assert "#" in line.split("=", 1)[1], key
