"""The command line against the sandbox: status schema and exit codes, resume, run --once, and
no secret anywhere (docs/design.md#alerts, docs/design.md#command-line)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e import INSTANCES, World, seed
from threatshare.sandbox.smtp import SmtpSink
from threatshare.sandbox.world import Sandbox

ROOT = Path(__file__).resolve().parent.parent
SMTP_PASSWORD = "Smtp-Pass-Never-Shown-7"


def cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "threatshare.cli", "--config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[World]:
    with Sandbox(tenant_names=("prod", "lab")) as sandbox:
        seed(sandbox)
        # Alerts go through an SMTP server that requires a login, so a password is in play.
        sandbox.smtp.stop()
        sandbox.smtp = SmtpSink(require_auth=("alerts", SMTP_PASSWORD)).start()
        yield World(sandbox, tmp_path, redis_url)


def write(world: World) -> Path:
    path = world.write(settings={"log_format": "json"})
    text = path.read_text().replace(
        'security = "none"',
        f'security = "none"\nusername = "alerts"\npassword = "{SMTP_PASSWORD}"',
    )
    path.write_text(text)
    return path


def redis_dump(url: str) -> str:
    """Every key and value in the database, as text."""
    client = redis.Redis.from_url(url)
    parts = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        parts.append(key.decode(errors="replace"))
        if kind == "string":
            parts.append(repr(client.get(key)))
        elif kind == "hash":
            parts.append(repr(client.hgetall(key)))
        elif kind == "list":
            parts.append(repr(client.lrange(key, 0, -1)))
        elif kind == "set":
            parts.append(repr(client.smembers(key)))
        elif kind == "zset":
            parts.append(repr(client.zrange(key, 0, -1)))
        elif kind == "stream":
            parts.append(repr(client.xrange(key)))
    return "\n".join(parts)


class TestStatus:
    def test_json_schema_and_exit_codes(self, world: World) -> None:
        """status --json follows docs/design.md#command-line; exit 2 with a halted instance, 1 once
        only retrying, 0 when all are fine."""
        world.sandbox.idp.revoke(world.sandbox.tenants["lab"].client_id)
        path = write(world)
        run = cli(path, "run", "--once")
        assert run.returncode == 1  # one instance did not end ok
        status = cli(path, "status", "--json")
        assert status.returncode == 2
        records = {r["name"]: r for r in json.loads(status.stdout)["instances"]}
        assert set(records) == set(INSTANCES)
        ok, halted = records["all"], records["lab"]
        for record in records.values():
            assert {
                "name",
                "state",
                "bookmark",
                "last_success",
                "last_error",
                "error_since",
                "category",
                "last_run",
                "quota",
                "lifecycle",
            } <= set(record)
            assert set(record["lifecycle"]) == {
                "expire_after",
                "oldest_last_seen",
                "next_expiry",
                "expired",
                "evicted",
                "removed_by_hand",
                "foreign",
                "unblocked",
                "last_reconciled",
            }
            assert set(record["category"]) >= {"name", "id", "entries"}
            run_keys = {"pulled", "pushed", "rejected", "skipped", "removed"}
            assert all(isinstance(record["last_run"][k], int) for k in run_keys)
            assert isinstance(record["last_run"]["skipped_by_reason"], dict)
            assert isinstance(record["last_run"]["rejected_by_reason"], dict)
        assert ok["state"] == "ok" and ok["last_error"] is None
        assert ok["bookmark"].endswith("Z") and ok["category"]["entries"] == 7
        assert ok["quota"] is not None
        assert set(ok["quota"]) == {"used", "remaining", "reserve", "at"}
        # After the run's own pushes: 7 entries of "all" and 1 of "domains" on tenant prod.
        assert (ok["quota"]["used"], ok["quota"]["reserve"]) == (8, 1250)
        assert ok["lifecycle"]["expire_after"] == "30d"
        assert ok["lifecycle"]["next_expiry"] is not None
        assert halted["state"] == "halted"
        assert set(halted["last_error"]) == {"kind", "code", "message", "at"}
        assert halted["last_error"]["code"] == "zia_auth"
        assert halted["error_since"].endswith("Z")

        table = cli(path, "status")
        assert table.returncode == 2
        assert "halted" in table.stdout and "zia_auth" in table.stdout

        resumed = cli(path, "resume", "lab")
        assert resumed.returncode == 0 and "resumed" in resumed.stdout
        assert cli(path, "status", "lab", "--json").returncode == 1  # retrying now
        assert cli(path, "status", "all").returncode == 0
        assert cli(path, "status", "nope").returncode == 2

    def test_dry_run_changes_nothing(self, world: World) -> None:
        """run --once --dry-run lists what would be pushed and changes nothing."""
        path = write(world)
        result = cli(path, "run", "--once", "--dry-run", "--instance", "lab")
        assert result.returncode == 0, result.stderr
        assert "lab: would push 4 entries" in result.stdout
        assert "evil.example.com/login" in result.stdout
        assert world.zia_calls("lab") == 0
        assert redis_dump(world.redis_url).count("threatshare:") == 0

    def test_unknown_instance_is_refused(self, world: World) -> None:
        """Naming an instance that is not configured exits 2 and runs nothing."""
        result = cli(write(world), "run", "--once", "--instance", "ghost")
        assert result.returncode == 2
        assert "ghost" in result.stderr


class TestSecrets:
    def test_no_secret_in_logs_status_redis_or_mail(self, world: World) -> None:
        """No secret or token appears in any log line, status output, Redis key or value, or
        e-mail, through a run with a halt, a recovery and alerts sent with an SMTP login."""
        lab = world.sandbox.tenants["lab"]
        world.sandbox.idp.revoke(lab.client_id)
        path = write(world)
        outputs = [cli(path, "run", "--once")]
        world.sandbox.idp.add_client("zia-lab-2", "Lab-Secret-Two-9", scope=lab.scope)
        fixed = path.read_text().replace(lab.client_secret, "Lab-Secret-Two-9")
        path.write_text(fixed.replace(f'"{lab.client_id}"', '"zia-lab-2"'))
        outputs.append(cli(path, "run", "--once"))
        outputs += [cli(path, "status"), cli(path, "status", "--json"), cli(path, "check")]
        assert outputs[1].returncode == 0, outputs[1].stdout + outputs[1].stderr
        mails = world.sandbox.smtp.messages
        assert [m.message["Subject"] for m in mails] == [
            "[threatshare] lab halted: zia_auth",
            "[threatshare] lab recovered",
        ]
        assert all(m.login == "alerts" for m in mails)
        account = world.sandbox.mimecast.account(world.sandbox.mimecast_url)
        secrets = {
            account.client_secret.get_secret_value(),
            world.sandbox.tenants["prod"].client_secret,
            lab.client_secret,
            "Lab-Secret-Two-9",
            SMTP_PASSWORD,
            *world.sandbox.idp._tokens,  # every access token the IdP issued
        }
        haystacks = {
            "output": "\n".join(o.stdout + o.stderr for o in outputs),
            "redis": redis_dump(world.redis_url),
            "mail": "\n".join(m.raw.decode(errors="replace") for m in mails),
        }
        assert "run.ok" in haystacks["output"]  # the logs were really captured
        for where, text in haystacks.items():
            for secret in secrets:
                assert secret not in text, f"a secret appears in {where}"
            assert "Bearer " not in text, where


class TestCheckLive:
    def test_live_check_reports_each_account_and_tenant(self, world: World) -> None:
        """check --live gets tokens and reads once per account and tenant; a revoked client
        is reported as failing and the exit code is 1."""
        path = write(world)
        good = cli(path, "check", "--live")
        assert good.returncode == 0, good.stdout + good.stderr
        assert "ok   mimecast.main" in good.stdout
        assert "ok   zia.prod" in good.stdout and "ok   zia.lab" in good.stdout
        world.sandbox.idp.revoke(world.sandbox.tenants["lab"].client_id)
        bad = cli(path, "check", "--live")
        assert bad.returncode == 1
        assert "FAIL zia.lab: zia_auth (permanent)" in bad.stdout
        assert "ok   zia.prod" in bad.stdout


class TestDemo:
    def test_demo_shows_the_product_working(self, tmp_path: Path) -> None:
        """`threatshare demo` syncs the sandbox, shows status, the categories and the alert."""
        result = subprocess.run(
            [sys.executable, "-m", "threatshare.cli", "demo", "--state-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=ROOT,
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        out = result.stdout
        assert "=== threatshare status ===" in out
        assert "login.micros0ft-support.example/verify" in out
        assert "xn--bcher-rabatt-dlb.example:8080/angebot/" in out
        assert "Subject: [threatshare] lab-urls halted: zia_auth" in out
        assert "192.168.10.20" not in out.split("=== ZIA tenant")[1]
        # The demo's state persists: status works afterwards without the emulators.
        status = cli(tmp_path / "threatshare.toml", "status", "--json")
        assert status.returncode == 2
        states = {r["name"]: r["state"] for r in json.loads(status.stdout)["instances"]}
        assert states == {"impersonation": "ok", "urls": "ok", "lab-urls": "halted"}


class TestRedisDown:
    def test_status_says_redis_is_unreachable_in_one_line_and_exits_3(self, tmp_path: Path) -> None:
        """`status` with Redis down prints one line naming where it looked (no password, no
        traceback) and exits 3."""
        import socket

        with socket.socket() as probe:  # a port nothing listens on once the socket is closed
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with Sandbox(tenant_names=("prod", "lab")) as sandbox:
            settings = {"redis_url": f"redis://:Down-Pass-3@127.0.0.1:{port}/0"}
            path = sandbox.write_config(tmp_path / "t.toml", INSTANCES, settings=settings)
            result = cli(path, "status")
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 3, output
        assert len(output.splitlines()) == 1, output
        assert f"127.0.0.1:{port}" in output and "Redis" in output
        assert "Down-Pass-3" not in output and "Traceback" not in output
