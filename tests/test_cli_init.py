"""From nothing to a valid configuration as a new operator goes: `init`, edit, `check`, with
each message `check` gives on the way (docs/design.md#command-line, #configuration)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("THREATSHARE_")}
    return subprocess.run(
        [sys.executable, "-m", "threatshare.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**environ, **(env or {})},
    )


def edit(path: Path, *pairs: tuple[str, str]) -> None:
    text = path.read_text()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text)


FILLED_IN = (
    ('client_id = "change-me"', 'client_id = "mc-client-1"'),
    ('client_secret = "change-me"', 'client_secret = "Mc-Secret-Real-1"'),
    ('client_id = "change-me"', 'client_id = "zia-client-1"'),
    ('client_secret = "change-me"', 'client_secret = "Zia-Secret-Real-2"'),
    ("https://<your-idp>/", "https://idp.example.com/"),
    ("zscloud.net::<orgId>::<API role>", "zscloud.net::3173833::ThreatShare"),
)


def test_init_then_edit_then_check(tmp_path: Path) -> None:
    """`init` writes a 0600 starter that `check` refuses for its placeholders, one line each;
    a typo gets a did-you-mean, a bad environment variable is named as such, an http://
    redis_url is refused; once filled in it is valid, and never overwritten by a second
    `init`."""
    path = tmp_path / "threatshare.toml"
    written = cli("init", str(path))
    assert written.returncode == 0, written.stderr
    assert f"{path}: written (mode 0600)" in written.stdout
    assert "check --live" in written.stdout and "run --once --dry-run" in written.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    starter = path.read_text()
    for step in ("check --live", "run --once --dry-run", "URL Filtering rule", "URL Categories"):
        assert step in starter, step

    again = cli("init", str(path))
    assert again.returncode == 1
    assert again.stderr.strip() == f"{path}: already exists; init never overwrites a file"
    assert path.read_text() == starter

    # Placeholders: one line each, the count in the header, --config after the command.
    fresh = cli("check", "--config", str(path))
    assert fresh.returncode == 2
    lines = fresh.stderr.strip().splitlines()
    assert lines[0] == f"{path}: invalid configuration (6 problems)"
    assert sorted(line.strip() for line in lines[1:]) == [
        f"{key}: is a placeholder, not a real value"
        for key in (
            "mimecast.main.client_id",
            "mimecast.main.client_secret",
            "zia.prod.client_id",
            "zia.prod.client_secret",
            "zia.prod.scope",
            "zia.prod.token_url",
        )
    ]

    # Filled in, with one typo: one problem, and what was meant.
    edit(path, *FILLED_IN, ('interval = "60s"', 'intervall = "60s"'))
    typo = cli("--config", str(path), "check")
    assert typo.returncode == 2
    assert typo.stderr.splitlines() == [
        f"{path}: invalid configuration (1 problem)",
        "  settings.intervall: unknown key; did you mean 'interval'?",
    ]
    edit(path, ('intervall = "60s"', 'interval = "60s"'))

    # A placeholder and a typo from the environment name the variables, not the file.
    env = {
        "THREATSHARE_ZIA__PROD__CLIENT_SECRET": "xxx",
        "THREATSHARE_SETTINGS__INTERVALL": "30s",
    }
    from_env = cli("check", "--config", str(path), env=env)
    assert from_env.returncode == 2
    assert from_env.stderr.splitlines() == [
        "the environment: invalid configuration (2 problems)",
        "  THREATSHARE_ZIA__PROD__CLIENT_SECRET: is a placeholder, not a real value",
        "  THREATSHARE_SETTINGS__INTERVALL: unknown key; did you mean 'interval'?",
    ]
    assert str(path) not in from_env.stderr

    # Redis is spoken to over redis://, rediss:// or unix:// only; the URL is never echoed.
    edit(path, ("[settings]\n", '[settings]\nredis_url = "http://:Pw-Hidden-4@redis:6379"\n'))
    http = cli("check", "--config", str(path))
    assert http.returncode == 2
    assert "settings.redis_url: must be a redis://, rediss:// or unix:// URL" in http.stderr
    assert "Pw-Hidden-4" not in http.stdout + http.stderr
    edit(path, ('redis_url = "http://:Pw-Hidden-4@redis:6379"\n', ""))

    # Valid. The file holds secrets and others may read it: warned.
    path.chmod(0o644)
    valid = cli("check", "--config", str(path))
    assert valid.returncode == 0, valid.stderr
    assert f"{path}: valid (1 instance, 1 Mimecast account, 1 ZIA tenant)" in valid.stdout
    assert f"warning: {path}: holds secrets and is world-readable" in valid.stdout


def test_files_are_judged_by_what_they_hold(tmp_path: Path) -> None:
    """A world-readable configuration without secret values is not warned of; a
    world-readable secret file in secrets_dir is, by name; an owner-only one is not."""
    path = tmp_path / "threatshare.toml"
    assert cli("init", str(path)).returncode == 0
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o755)
    secrets.chmod(0o755)
    loose = secrets / "threatshare_zia__prod__client_secret"
    loose.write_text("Zia-Secret-Real-2\n")
    loose.chmod(0o644)
    tight = secrets / "threatshare_mimecast__main__client_secret"
    tight.write_text("Mc-Secret-Real-1\n")
    tight.chmod(0o600)
    edit(
        path,
        *[pair for pair in FILLED_IN if "client_secret" not in pair[0]],
        ('client_secret = "change-me"', "# client_secret: a secret file"),
        ('client_secret = "change-me"', "# client_secret: a secret file"),
        ('# secrets_dir = "/run/secrets"', f'secrets_dir = "{secrets}"'),
    )
    path.chmod(0o644)
    result = cli("check", "--config", str(path))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning:")]
    assert f"warning: {loose}: a secret file readable by every user; chmod o-r it" in warnings
    assert not any(str(path) in line or str(tight) in line for line in warnings), warnings

    # A placeholder in a secret file is named by the file.
    loose.write_text("change-me\n")
    placeholder = cli("check", "--config", str(path))
    assert placeholder.returncode == 2
    assert f"  {loose}: is a placeholder, not a real value" in placeholder.stderr.splitlines()
