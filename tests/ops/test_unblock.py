"""`threatshare unblock` (docs/design.md#unblocking): removal of an entry and everything under it,
activation before returning, the runtime allow list every run honours, --list, --undo and --all; a
removal ZIA did not accept is finished by the instance's next run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest

from tests.e2e import FAST
from tests.sync.lifecycle_world import CATEGORY, INSTANCE, Life, make_life
from threatshare import cli
from threatshare.commands import unblock as unblock_module
from threatshare.ops.status import instance_status
from threatshare.runtime import Runtime
from threatshare.state.store import Store
from threatshare.state.unblocked import UnblockList

THREATS = [
    "https://evil.example/login",
    "https://sub.evil.example/x",
    "https://evil.example",
    "https://other.example/p",
]


# The command configures logging process-wide; later tests must find the defaults.
pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.fixture
def life(tmp_path: Path, redis_url: str) -> Iterator[Life]:
    with make_life(tmp_path, redis_url) as life:
        yield life


@pytest.fixture
def blocked(life: Life) -> Iterator[tuple[Life, Path]]:
    """An instance whose category holds THREATS, active, and its configuration file."""
    life.threats(THREATS)
    assert life.run().state == "ok"
    path = life.world.tmp / "threatshare.toml"
    yield life, path


def unblock(path: Path, *args: str) -> int:
    return cli.main(["--config", str(path), "unblock", *args])


def test_removes_it_and_everything_under_it_and_activates(
    blocked: tuple[Life, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Unblocking a host removes it and every entry at or under it from the category, and
    the removal is active in ZIA when the command returns."""
    life, path = blocked
    assert unblock(path, "life", "https://Evil.Example/", "--reason", "false positive") == 0
    assert life.active() == {"other.example/p"}
    out = capsys.readouterr().out
    assert "life: unblocked evil.example: 3 entries removed" in out and "active in ZIA" in out
    assert life.status()["category"]["entries"] == 1
    assert life.status()["lifecycle"]["unblocked"] == 1


def test_a_later_record_is_not_pushed_and_undo_allows_it_again(
    blocked: tuple[Life, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A record of an unblocked entry (or one under it) is skipped by every later run;
    --undo takes it off the list and the next record pushes it again."""
    life, path = blocked
    assert unblock(path, "life", "evil.example") == 0
    life.clock.advance(timedelta(hours=1))
    life.threats(["https://evil.example/login", "https://deeper.sub.evil.example/y"])
    result = life.run()
    assert result.counters["skipped_by_reason"]["unblocked"] == 2
    assert result.counters["pushed"] == 0
    assert "evil.example/login" not in life.zia.staged_urls(CATEGORY)
    assert unblock(path, "life", "--undo", "evil.example") == 0
    assert "new records push it again" in capsys.readouterr().out
    life.clock.advance(timedelta(hours=1))
    life.threats(["https://evil.example/login"])
    assert life.run().counters["pushed"] == 1
    assert "evil.example/login" in life.active()


def test_list_shows_entry_when_reason_and_who(
    blocked: tuple[Life, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """--list shows each unblocked entry with when, who and why."""
    _, path = blocked
    unblock(path, "life", "other.example/p", "--reason", "ticket 42")
    capsys.readouterr()
    assert unblock(path, "life", "--list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["INSTANCE", "ENTRY", "WHEN", "WHO", "REASON"]
    assert lines[1].startswith("life") and "other.example/p" in lines[1]
    assert lines[1].rstrip().endswith("ticket 42")


def test_all_applies_to_every_instance(life: Life, capsys: pytest.CaptureFixture[str]) -> None:
    """--all unblocks in every instance of the configuration."""
    second = {**INSTANCE, "category": "Second URLs"}
    life.config = life.world.config({"life": INSTANCE, "second": second})
    life.threats(["https://shared.example/a"])
    life.run()
    path = life.world.tmp / "threatshare.toml"
    assert cli.main(["--config", str(path), "run", "--once", "--instance", "second"]) == 0
    assert "shared.example/a" in life.zia.active_urls("Second URLs")
    assert unblock(path, "--all", "shared.example") == 1  # --all asks for --yes first
    assert "would remove 2 entries from life (1), second (1)" in capsys.readouterr().err
    assert life.active() == {"shared.example/a"}
    assert unblock(path, "--all", "shared.example", "--yes") == 0
    assert life.active() == set() and life.zia.active_urls("Second URLs") == set()
    store = Store(life.redis)
    assert instance_status(life.config, store, "second")["lifecycle"]["unblocked"] == 1
    assert "second: unblocked shared.example: 1 entries removed" in capsys.readouterr().out


def test_bad_arguments_are_refused_and_change_nothing(
    blocked: tuple[Life, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """An argument that is no entry, an unknown instance or no entry at all exit 2 with a
    clear message and change nothing."""
    life, path = blocked
    assert unblock(path, "life", "ftp://evil.example/") == 2
    assert "is not an entry of a category (unsupported_scheme)" in capsys.readouterr().err
    assert unblock(path, "nope", "evil.example") == 2
    assert "no instance 'nope'" in capsys.readouterr().err
    assert unblock(path, "life") == 2
    assert unblock(path) == 2
    assert unblock(path, "life", "--undo", "never.example") == 1
    assert life.status()["lifecycle"]["unblocked"] == 0
    assert len(life.active()) == 4


def test_a_wider_wildcard_that_still_blocks_is_named(
    life: Life,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An entry still blocked by a wildcard above it (".evil.example") is said to be, and the
    command exits 1; in a category that is not threatshare's, even --wider leaves it alone."""
    life.zia.admin_create(CATEGORY, [".evil.example"], "managed by hand")
    life.threats(["https://a.evil.example/x"])
    life.run()
    path = life.world.tmp / "threatshare.toml"
    assert unblock(path, "life", "a.evil.example") == 1
    out = capsys.readouterr().out
    assert "still blocked by the wider entry .evil.example" in out
    assert ".evil.example" in life.zia.staged_urls(CATEGORY)
    assert unblock(path, "life", "a.evil.example", "--wider") == 1
    assert ".evil.example" in life.zia.staged_urls(CATEGORY)


def test_a_url_under_blocked_entries_names_them_and_wider_removes_them(
    life: Life, capsys: pytest.CaptureFixture[str]
) -> None:
    """Unblocking a URL below a blocked host and a blocked shorter path names both and exits
    1; --wider removes them too, puts them on the runtime allow list, and exits 0."""
    life.threats(["https://login.partner.example/", "https://login.partner.example/account/reset"])
    life.run()
    assert life.active() == {"login.partner.example", "login.partner.example/account/reset"}
    path = life.world.tmp / "threatshare.toml"
    target = "https://login.partner.example/account/reset/step2"
    assert unblock(path, "life", target) == 1
    out = capsys.readouterr().out
    assert "still blocked by the wider entry login.partner.example " in out
    assert "still blocked by the wider entry login.partner.example/account/reset " in out
    assert len(life.active()) == 2
    assert unblock(path, "life", target, "--wider", "--reason", "partner login") == 0
    out = capsys.readouterr().out
    assert "also unblocked the wider entry login.partner.example" in out
    assert life.active() == set()
    listed = {u.entry for u in UnblockList(life.redis, "life").entries()}
    assert listed == {
        "login.partner.example/account/reset/step2",
        "login.partner.example",
        "login.partner.example/account/reset",
    }
    life.clock.advance(timedelta(minutes=5))
    life.threats(["https://login.partner.example/account/reset"], ago=timedelta(minutes=1))
    life.run()
    assert life.active() == set()


def test_more_than_a_hundred_removals_ask_for_yes(
    life: Life, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unblock that would remove more than 100 entries says how many and where, changes
    nothing, and goes ahead only with --yes."""
    life.threats([f"https://bulk.example/p{i}" for i in range(101)])
    life.run()
    path = life.world.tmp / "threatshare.toml"
    assert unblock(path, "life", "bulk.example") == 1
    err = capsys.readouterr().err
    assert "this would remove 101 entries from life (101)" in err and "--yes" in err
    assert len(life.active()) == 101
    assert UnblockList(life.redis, "life").entries() == []
    assert unblock(path, "life", "bulk.example", "--yes") == 0
    assert life.active() == set()


@pytest.fixture
def fast_command(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command retries on the tests' short waits (its retries still run out)."""
    monkeypatch.setattr(unblock_module, "Runtime", partial(Runtime, policy=FAST))


@pytest.mark.usefixtures("fast_command")
def test_a_removal_zia_refuses_is_said_and_the_next_run_finishes_it(
    blocked: tuple[Life, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """When ZIA's edit lock outlasts the command's retries, the command says the removal
    failed and that the next run retries it (exit 1); the next run removes the entries and
    activates, and a run after it, with nothing due, makes no ZIA call."""
    life, path = blocked
    life.zia.fail_next("409", FAST.max_attempts, path="/urlCategories/{id}")
    assert unblock(path, "life", "evil.example", "--reason", "false positive") == 1
    err = capsys.readouterr().err
    assert "life: unblocked evil.example: the removal from ZIA failed (zia_edit_lock)" in err
    assert "the next run of the instance retries the removal" in err
    assert len(life.active()) == 4  # still blocked, for now
    life.clock.advance(timedelta(hours=1))
    life.threats(["https://evil.example/login"])  # a new record is not pushed meanwhile
    result = life.run()
    assert result.state == "ok", result.error
    assert result.counters["removed"] == 3
    assert result.counters["skipped_by_reason"]["unblocked"] == 1
    assert life.active() == {"other.example/p"}
    assert life.status()["category"]["entries"] == 1
    assert UnblockList(life.redis, "life").pending() == []
    life.clock.advance(timedelta(hours=1))
    before = life.calls()
    assert life.run().state == "ok"
    assert life.calls() == before


def test_an_unblock_killed_before_its_removal_is_finished_by_the_next_run(
    blocked: tuple[Life, Path],
) -> None:
    """An entry listed by a command that died before ZIA removed it (only the list was
    written) leaves the category at the next run, which activates the tenant."""
    life, _ = blocked
    UnblockList(life.redis, "life").add(["sub.evil.example"], life.clock.now, "fp", "ops")
    life.clock.advance(timedelta(hours=1))
    result = life.run()
    assert result.state == "ok" and result.counters["removed"] == 1
    assert life.active() == {"evil.example/login", "evil.example", "other.example/p"}
    assert life.status()["lifecycle"]["unblocked"] == 1


def test_a_removal_that_fails_in_the_run_too_stays_pending(blocked: tuple[Life, Path]) -> None:
    """A run whose removal of a pending unblock fails is retrying, and leaves the unblock
    pending: the run after it removes the entry."""
    life, _ = blocked
    UnblockList(life.redis, "life").add(["other.example/p"], life.clock.now, "fp", "ops")
    life.zia.fail_next("500", FAST.max_attempts, path="/urlCategories/{id}")
    life.clock.advance(timedelta(hours=1))
    assert life.run().state == "retrying"
    assert "other.example/p" in life.active()
    assert UnblockList(life.redis, "life").pending() == ["other.example/p"]
    life.clock.advance(timedelta(hours=1))
    assert life.run().state == "ok"
    assert "other.example/p" not in life.active()
    assert UnblockList(life.redis, "life").pending() == []
