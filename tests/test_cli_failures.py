"""Every command, whatever fails under it, prints one line naming the cause and the place and
exits with its documented code, never a traceback; interactive commands give up on an
unreachable host within 30 s (docs/design.md#command-line)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e import INSTANCES
from threatshare.sandbox.world import Sandbox

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 60.0


def redis_commands() -> tuple[tuple[str, ...], ...]:
    """Every command that needs Redis, with the arguments that make it reach for it."""
    return (
        ("run", "--once"),
        ("run",),
        ("worker", "--burst"),
        ("scheduler",),
        ("resume", "all"),
        ("unblock", "all", "evil.example"),
        ("status",),
        ("serve", "--listen", f"127.0.0.1:{closed_port()}"),
        ("check", "--live"),
    )


# A process that owns the embedded Redis of a state_dir (as `threatshare run` does) and keeps
# holding it after its Redis died.
HOLDER = """
import sys, time
from pathlib import Path
from threatshare.embedded import connect_or_start
url, owned = connect_or_start(Path(sys.argv[1]), own=True)
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
"""


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(path: Path | None, *args: str) -> subprocess.Popen[str]:
    config = ["--config", str(path)] if path is not None else []
    return subprocess.Popen(
        [sys.executable, "-m", "threatshare.cli", *config, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "THREATSHARE_TRACEBACK": ""},
    )


def finish_all(
    processes: dict[tuple[str, ...], subprocess.Popen[str]],
) -> dict[tuple[str, ...], tuple[int, str, str]]:
    """Each process's exit code, stdout and stderr; each is killed past the bound."""
    results = {}
    deadline = time.monotonic() + TIMEOUT
    for args, process in processes.items():
        try:
            out, err = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate(timeout=10)
            pytest.fail(f"{' '.join(args)} still ran after {TIMEOUT:.0f}s: {err[-500:]}")
        results[args] = (process.returncode, out, err)
    return results


def assert_one_line(args: tuple[str, ...], result: tuple[int, str, str], *needles: str) -> None:
    code, out, err = result
    shown = " ".join(args)
    assert "Traceback" not in out + err, f"{shown}: {err}"
    # `check --live` first says, offline, that the file is valid and which rules it applies;
    # nothing else prints on stdout.
    offline = (": valid (", "rules: ")
    kept = [
        line
        for line in out.splitlines()
        if not (args[0] == "check" and any(mark in line for mark in offline))
    ]
    assert not kept, f"{shown} printed on stdout: {out}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"{shown}: {err}"
    for needle in needles:
        assert needle in lines[0], f"{shown}: {lines[0]}"
    assert code == 3, f"{shown} exited {code}: {lines[0]}"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tenant_names=("prod", "lab")) as world:
        yield world


def test_every_command_says_in_one_line_that_redis_is_unreachable(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """With redis_url pointing at a closed port, each command prints one line naming Redis,
    the host and port and the cause, exits 3, and shows neither a traceback nor the
    password."""
    port = closed_port()
    settings = {"redis_url": f"redis://:Unseen-Pass-5@127.0.0.1:{port}/0"}
    path = sandbox.write_config(tmp_path / "t.toml", INSTANCES, settings=settings)
    results = finish_all({args: start(path, *args) for args in redis_commands()})
    for args, result in results.items():
        if args == ("status",):  # status words it its own way (and exits 3 too)
            assert result[0] == 3 and "Traceback" not in result[2]
            assert f"Redis at 127.0.0.1:{port}: connection refused" in result[1]
            continue
        assert_one_line(args, result, f"redis 127.0.0.1:{port}: connection refused")
        assert "Unseen-Pass-5" not in result[1] + result[2]


def test_every_command_names_the_pid_holding_state_dir(sandbox: Sandbox, tmp_path: Path) -> None:
    """With state_dir owned by another process whose embedded Redis died, each command (the
    demo too) prints one line `state_dir …: in use by pid N` and exits 3 within seconds."""
    state = tmp_path / "state"
    demo_dir = tmp_path / "demo"
    holders = [
        subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(where), "120"],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for where in (state, demo_dir / "state")
    ]
    try:
        for holder in holders:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
            # Its Redis dies; the owner lives on, holding state_dir.
            for child in psutil.Process(holder.pid).children():
                child.kill()
        settings = {"state_dir": str(state)}
        path = sandbox.write_config(tmp_path / "t.toml", INSTANCES, settings=settings)
        started = time.monotonic()
        processes = {args: start(path, *args) for args in redis_commands()}
        processes[("demo",)] = start(None, "demo", "--state-dir", str(demo_dir))
        results = finish_all(processes)
        elapsed = time.monotonic() - started
        for args, result in results.items():
            if args == ("demo",):  # the demo prints its steps before it needs Redis
                code, out, err = result
                assert code == 3 and "Traceback" not in out + err, err
                assert (
                    err.strip()
                    .splitlines()[-1]
                    .startswith(f"state_dir {demo_dir / 'state'}: in use by pid {holders[1].pid}")
                )
                continue
            assert_one_line(args, result, f"state_dir {state}: in use by pid {holders[0].pid}")
        assert elapsed < 45, f"the commands took {elapsed:.0f}s to give up"
    finally:
        for holder in holders:
            holder.kill()
            holder.wait(timeout=10)
            if holder.stdout is not None:
                holder.stdout.close()


def test_a_second_run_is_told_at_once_who_holds_state_dir(tmp_path: Path) -> None:
    """While a long-lived owner (as `threatshare run`) serves state_dir, a second `run` and a
    `worker` on it say at once which pid holds it and exit 3, and `status` still reads it."""
    state = tmp_path / "state"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state), "120"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with Sandbox(tenant_names=("prod", "lab")) as sandbox:
            settings = {"state_dir": str(state)}
            path = sandbox.write_config(tmp_path / "t.toml", INSTANCES, settings=settings)
            started = time.monotonic()
            results = finish_all(
                {
                    ("run",): start(path, "run"),
                    ("worker",): start(path, "worker"),
                    ("status", "--json"): start(path, "status", "--json"),
                }
            )
        for args in (("run",), ("worker",)):
            assert_one_line(args, results[args], f"state_dir {state}: in use by pid {holder.pid}")
        assert time.monotonic() - started < 30  # not after a minute of waiting
        code, out, _ = results[("status", "--json")]
        assert code == 0 and '"instances"' in out
    finally:
        # Killed, the holder cannot stop the Redis it started: stop it, or it outlives the test.
        for child in psutil.Process(holder.pid).children(recursive=True):
            child.kill()
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()


def test_interactive_commands_give_up_on_a_refusing_host_within_30s(
    sandbox: Sandbox, tmp_path: Path, redis_url: str
) -> None:
    """With Mimecast and ZIA refusing connections, `check --live` and `run --once` end within
    30 s, exit 1, and name the host, the port and the cause."""
    mimecast_port, idp_port = closed_port(), closed_port()
    path = sandbox.write_config(tmp_path / "t.toml", INSTANCES, settings={"redis_url": redis_url})
    text = path.read_text()
    text = text.replace(sandbox.mimecast_url, f"http://127.0.0.1:{mimecast_port}")
    text = text.replace(sandbox.token_url, f"http://127.0.0.1:{idp_port}/token")
    path.write_text(text)
    started = time.monotonic()
    results = finish_all({("check", "--live"): start(path, "check", "--live")})
    code, out, err = results[("check", "--live")]
    assert time.monotonic() - started < 30
    assert code == 1 and "Traceback" not in out + err, err
    assert f"127.0.0.1:{mimecast_port}: connection refused" in out
    assert f"127.0.0.1:{idp_port}: connection refused" in out
    started = time.monotonic()
    results = finish_all({("run", "--once"): start(path, "run", "--once", "--instance", "all")})
    code, out, err = results[("run", "--once")]
    assert time.monotonic() - started < 30
    assert code == 1 and "Traceback" not in out + err, err
    assert f"127.0.0.1:{mimecast_port}: connection refused" in out


def test_unblock_gives_up_on_an_unreachable_zia_within_30s(tmp_path: Path, redis_url: str) -> None:
    """`unblock` against a ZIA that refuses connections ends within 30 s with exit 1, one
    line naming the host, port and cause, and leaves the entry for the next run."""
    from tests.sync.lifecycle_world import make_life
    from threatshare.state.unblocked import UnblockList

    with make_life(tmp_path, redis_url) as life:
        life.threats(["https://evil.example/login", "https://other.example/p"])
        assert life.run().state == "ok"
        path = tmp_path / "threatshare.toml"
        port = closed_port()
        base = life.config.zia["prod"].resolved_api_base
        path.write_text(path.read_text().replace(base, f"http://127.0.0.1:{port}/api/v1"))
        started = time.monotonic()
        results = finish_all({("unblock",): start(path, "unblock", "life", "evil.example")})
        elapsed = time.monotonic() - started
        code, out, err = results[("unblock",)]
        assert elapsed < 30, f"unblock took {elapsed:.0f}s"
        assert code == 1 and "Traceback" not in out + err, err
        # Beside its JSON log lines (it logs the unblock and the retries), one line says it.
        lines = [line for line in err.strip().splitlines() if not line.startswith("{")]
        assert len(lines) == 1, err
        assert f"127.0.0.1:{port}: connection refused" in lines[0]
        assert "the next run of the instance retries the removal" in lines[0]
        assert [e.entry for e in UnblockList(life.redis, "life").entries()] == ["evil.example"]
