"""Upstreams that echo our credentials back (docs/design.md#security): a token endpoint quoting the
client secret it refused, a 401 quoting the bearer token. The secret reaches no output: not Redis,
not `status`, not `check --live`, not the `run --once` summary, not the logs, not the e-mail."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.store import Store

ROOT = Path(__file__).resolve().parents[1]
INSTANCES = {"urls": {"zia": "prod", "category": "Echo URLs", "sources": ["malicious_urls"]}}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tenant_names=("prod",)) as world:
        world.mimecast.add_url_logs(
            [url_log("https://echo.example/x", datetime.now(UTC) - timedelta(hours=1))]
        )
        yield world


def cli(config: Path, *args: str) -> str:
    """``threatshare --config CONFIG ARGS…`` as a child process: its stdout and stderr."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("THREATSHARE_")}
    done = subprocess.run(
        [sys.executable, "-m", "threatshare.cli", "--config", str(config), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout + done.stderr


def redis_dump(client: redis.Redis) -> bytes:
    """Every value of every key, as one blob to search."""
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        if kind == "string":
            parts.append(client.get(key) or b"")
        elif kind == "hash":
            parts.extend(k + b"=" + v for k, v in client.hgetall(key).items())
        elif kind == "list":
            parts.extend(client.lrange(key, 0, -1))
        elif kind == "set":
            parts.extend(client.smembers(key))
        elif kind == "zset":
            parts.extend(client.zrange(key, 0, -1))
        elif kind == "stream":
            parts.extend(repr(entry).encode() for entry in client.xrange(key))
        parts.append(key)
    return b"\n".join(parts)


def everything_shown(
    sandbox: Sandbox, config: Path, redis_client: redis.Redis
) -> tuple[str, bytes, str]:
    """One `run --once` (summary and logs), `status` in both forms, `check --live`; then the
    Redis dump and every e-mail the SMTP sink received."""
    shown = [cli(config, "run", "--once")]
    shown += [
        cli(config, "status"),
        cli(config, "status", "--json"),
        cli(config, "check", "--live"),
    ]
    mails = "\n".join(m.raw.decode(errors="replace") for m in sandbox.smtp.messages)
    return "\n".join(shown), redis_dump(redis_client), mails


def _config(sandbox: Sandbox, tmp_path: Path, redis_url: str, **overrides: object) -> Path:
    settings = {"redis_url": redis_url, "settle": "0s", "log_format": "json"}
    return sandbox.write_config(
        tmp_path / "threatshare.toml", INSTANCES, settings=settings, **overrides
    )


class TestEchoedSecrets:
    def test_a_token_endpoint_quoting_the_client_secret_leaks_it_nowhere(
        self, sandbox: Sandbox, tmp_path: Path, redis_url: str, redis_client: redis.Redis
    ) -> None:
        """The IdP refuses the ZIA token request with 400 invalid_scope and quotes the client
        secret in error_description: the instance halts, its operator reads the refusal, and
        the secret is in no output, no Redis value and no e-mail."""
        secret = sandbox.tenants["prod"].client_secret
        overrides = {"prod": {"scope": "zscloud.net::999::NotThisRole"}}
        config = _config(sandbox, tmp_path, redis_url, tenant_overrides=overrides)
        sandbox.idp_server.echo_credentials = True
        shown, dump, mails = everything_shown(sandbox, config, redis_client)
        state = Store(redis_client).load("urls")
        assert state.state == "halted"
        assert state.last_error is not None and state.last_error["code"] == "zia_auth"
        assert "invalid_scope" in state.last_error["message"]
        assert "credentials sent" in state.last_error["message"]  # the echo did arrive
        assert "halted" in mails  # the alert e-mail was sent
        assert secret not in shown, shown
        assert secret.encode() not in dump
        assert secret not in mails

    def test_a_401_quoting_the_bearer_token_leaks_it_nowhere(
        self, sandbox: Sandbox, tmp_path: Path, redis_url: str, redis_client: redis.Redis
    ) -> None:
        """Mimecast answers 401 twice (fresh token included) quoting the bearer token it got:
        the instance halts with mimecast_auth and no issued token appears anywhere."""
        config = _config(sandbox, tmp_path, redis_url)
        sandbox.mimecast_server.echo_credentials = True
        sandbox.mimecast.fail_next("url", "401", count=2)
        shown, dump, mails = everything_shown(sandbox, config, redis_client)
        tokens = list(sandbox.mimecast._tokens)
        assert tokens, "the emulator issued tokens"
        state = Store(redis_client).load("urls")
        assert state.last_error is not None and state.last_error["code"] == "mimecast_auth"
        assert "credentials sent" in state.last_error["message"]
        for token in tokens:
            assert token not in shown
            assert token.encode() not in dump
            assert token not in mails
