"""The embedded Redis of single-machine mode (docs/design.md#the-fleet): persistence and
ownership."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from threatshare.embedded import StateDirInUse, connect_or_start, holder_of, running_url

HOLD_AND_WAIT = """
import sys, time
from pathlib import Path
from threatshare.embedded import connect_or_start
url, owned = connect_or_start(Path(sys.argv[1]))
print("ready", flush=True)
time.sleep(float(sys.argv[2]))
if owned is not None:
    owned.stop()
"""


class TestOwnership:
    def test_data_survives_a_restart(self, tmp_path: Path) -> None:
        """What was written before the owner stopped is there when a new owner starts."""
        url, owned = connect_or_start(tmp_path / "state")
        assert owned is not None
        redis.Redis.from_url(url).set("bookmark", "kept")
        owned.stop()
        assert running_url(tmp_path / "state") is None
        url, owned = connect_or_start(tmp_path / "state")
        assert owned is not None
        try:
            assert redis.Redis.from_url(url).get("bookmark") == b"kept"
        finally:
            owned.stop()

    def test_a_second_process_attaches_without_owning(self, tmp_path: Path) -> None:
        """While one process owns the server, another attaches and does not stop it."""
        url, owned = connect_or_start(tmp_path / "state")
        assert owned is not None
        try:
            other_url, other = connect_or_start(tmp_path / "state")
            assert (other_url, other) == (url, None)
            assert redis.Redis.from_url(url).ping()
        finally:
            owned.stop()

    def test_long_lived_process_waits_for_a_short_owner(self, tmp_path: Path) -> None:
        """A long-lived process does not attach to a server a short command owns (it would be
        stopped under it): it waits, then owns a server of its own."""
        state = tmp_path / "state"
        short = subprocess.Popen(
            [sys.executable, "-c", HOLD_AND_WAIT, str(state), "1.0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert short.stdout is not None and short.stdout.readline().strip() == "ready"
            started = time.monotonic()
            url, owned = connect_or_start(state, own=True, wait=20)
            assert owned is not None
            assert time.monotonic() - started >= 0.5  # it waited for the short owner
            try:
                assert redis.Redis.from_url(url).ping()
            finally:
                owned.stop()
        finally:
            short.wait(timeout=20)
            short.stdout.close()

    def test_a_second_long_lived_owner_is_told_at_once_who_holds_it(self, tmp_path: Path) -> None:
        """While a long-lived process owns state_dir, another long-lived one is refused at
        once, naming the owner's pid, instead of waiting for it; a short one attaches."""
        state = tmp_path / "state"
        url, owned = connect_or_start(state, own=True)
        assert owned is not None
        try:
            holder = holder_of(state)
            assert holder is not None and holder.pid == os.getpid()
            assert holder.long_lived and holder.serving
            started = time.monotonic()
            with pytest.raises(
                StateDirInUse, match=rf"state_dir {state}: in use by pid {os.getpid()}$"
            ):
                connect_or_start(state, own=True, wait=30)
            assert time.monotonic() - started < 5
            assert connect_or_start(state) == (url, None)
        finally:
            owned.stop()
        assert holder_of(state) is None

    def test_server_of_a_dead_owner_is_adopted(self, tmp_path: Path) -> None:
        """A server left running by an owner that was killed is adopted, and stopped by its
        new owner."""
        state = tmp_path / "state"
        dead = subprocess.Popen(
            [sys.executable, "-c", HOLD_AND_WAIT, str(state), "60"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert dead.stdout is not None and dead.stdout.readline().strip() == "ready"
        dead.kill()
        dead.wait(timeout=10)
        dead.stdout.close()
        assert running_url(state) is not None  # the orphaned redis-server still serves
        _url, owned = connect_or_start(state, own=True, wait=10)
        assert owned is not None
        owned.stop()
        deadline = time.monotonic() + 10
        while running_url(state) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running_url(state) is None


class TestOwnerOnly:
    def test_a_loose_state_dir_and_its_files_become_owner_only(self, tmp_path: Path) -> None:
        """An existing state_dir left 0755 with a 0644 append-only file is made 0700/0600, and
        what the server writes there afterwards is owner-only too."""
        state = tmp_path / "state"
        state.mkdir(mode=0o755)
        state.chmod(0o755)
        old = state / "appendonly.aof"
        old.write_bytes(b"")
        old.chmod(0o644)
        url, owned = connect_or_start(state, own=True)
        assert owned is not None
        try:
            client = redis.Redis.from_url(url)
            client.set("bookmark", "kept")
            client.bgrewriteaof()
        finally:
            owned.stop()
        files = [p for p in state.rglob("*") if not p.is_socket()]
        assert files, "the server wrote its files"
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        for path in files:
            assert not stat.S_IMODE(path.stat().st_mode) & 0o077, (path, oct(path.stat().st_mode))

    def test_a_loose_state_dir_of_another_user_is_refused(self, tmp_path: Path) -> None:
        """A state_dir open to others and owned by someone else is refused with a message
        that says what to do."""
        if os.geteuid() != 0:
            pytest.skip("needs root to hand the directory to another user")
        state = tmp_path / "foreign"
        state.mkdir(mode=0o755)
        state.chmod(0o755)
        os.chown(state, 12345, 12345)
        with pytest.raises(RuntimeError, match="readable by its owner only"):
            connect_or_start(state)
        assert stat.S_IMODE(state.stat().st_mode) == 0o755
