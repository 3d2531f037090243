"""The one path of every change to a category (docs/design.md#the-category-change-path): no
other module writes to a category, every removal names its reason, every accepted batch is
heard once, and the stored quota follows each change."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sync.lifecycle_world import DAY, Life, make_life
from threatshare import cli
from threatshare.sync import change as change_module
from threatshare.sync.change import REASONS, Accepted, CategoryChange, Reason
from threatshare.zia.client import ZiaClient

ROOT = Path(__file__).resolve().parents[2]
#: The ZIA client's calls that change a category (or create one).
WRITES = ("add_batches", "create_with_entries", "find_or_create_category", "remove")
#: Where those calls may appear: the change path, and the client that defines them.
ALLOWED = {Path("threatshare/sync/change.py")}
ALLOWED_UNDER = (Path("threatshare/zia"), Path("threatshare/sandbox"))


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for top in ("threatshare", "workers", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            yield rel, ast.parse(path.read_text(), filename=str(rel))


def _is_write(call: ast.Call) -> str | None:
    """The ZIA write a call makes, if it is one. ``remove`` is also the name of a list's and
    a set's method (one argument) and of the change path's own (entries and a reason), so
    only a call with the client's four arguments or more counts as the client's."""
    func = call.func
    if not isinstance(func, ast.Attribute) or func.attr not in WRITES:
        return None
    if func.attr == "remove" and len(call.args) + len(call.keywords) < 4:
        return None
    return func.attr


def test_the_client_still_has_the_writes_this_test_looks_for() -> None:
    """Each write this test hunts for is a method of the ZIA client (a rename fails here)."""
    assert all(callable(getattr(ZiaClient, name, None)) for name in WRITES)
    assert inspect.signature(ZiaClient.remove).parameters.keys() >= {
        "category_id",
        "name",
        "entries",
        "batch_size",
    }


def test_only_the_change_path_calls_the_zia_client_writes() -> None:
    """No module but sync/change.py adds to, removes from or creates a category."""
    offenders = []
    seen_in_change = set()
    for rel, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or (write := _is_write(node)) is None:
                continue
            if rel in ALLOWED:
                seen_in_change.add(write)
            elif not rel.is_relative_to(ALLOWED_UNDER[0]) and not rel.is_relative_to(
                ALLOWED_UNDER[1]
            ):
                offenders.append(f"{rel}:{node.lineno} {write}")
    assert offenders == []
    assert seen_in_change == set(WRITES)  # the walk does find them where they are


def _reason_parameters(function: ast.FunctionDef) -> set[str]:
    args = function.args.args + function.args.kwonlyargs
    return {
        a.arg for a in args if isinstance(a.annotation, ast.Name) and a.annotation.id == "Reason"
    }


def test_every_removal_names_its_reason() -> None:
    """The change path's removal needs a reason, and every call of it passes one: a literal
    reason or a parameter typed as a reason."""
    signature = inspect.signature(CategoryChange.remove)
    assert signature.parameters["reason"].default is inspect.Parameter.empty
    calls = 0
    for rel, tree in _sources():
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef):
                continue
            typed = _reason_parameters(function)
            for node in ast.walk(function):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "remove"
                    and len(node.args) == 3
                ):
                    continue
                calls += 1
                reason = node.args[2]
                literal = isinstance(reason, ast.Constant) and reason.value in REASONS
                passed_on = isinstance(reason, ast.Name) and reason.id in typed
                assert literal or passed_on, f"{rel}:{node.lineno}: a removal without a reason"
    assert calls >= 5  # expiry, eviction, withdrawal, unfinished unblock, unblock


@pytest.fixture
def life(tmp_path: Path, redis_url: str) -> Iterator[Life]:
    with make_life(tmp_path, redis_url) as life:
        yield life


@pytest.fixture
def heard(monkeypatch: pytest.MonkeyPatch) -> list[Accepted]:
    """Every change the change path accepts, in order."""
    changes: list[Accepted] = []
    original = CategoryChange.accepted

    def hear(self: CategoryChange, change: Accepted, sightings: object = None) -> None:
        original(self, change, sightings)  # type: ignore[arg-type]
        changes.append(change)

    monkeypatch.setattr(change_module.CategoryChange, "accepted", hear)
    return changes


def test_each_accepted_change_is_heard_once_with_its_action_reason_and_run(
    life: Life, heard: list[Accepted]
) -> None:
    """Adds, an expiry and an unblock each pass the one hook once per accepted batch, with
    the run's id, the removal's reason and, for the unblock, who and why."""
    life.configure(expire_after="3d", batch_size=2, settings={"reconcile_every": "60d"})
    life.threats(["https://a.example/x", "https://b.example/x", "https://c.example/x"])
    first = life.run()
    assert [(c.action, len(c.entries), c.run_id) for c in heard] == [
        ("added", 2, first.run_id),
        ("added", 1, first.run_id),
    ]
    life.clock.advance(2 * DAY)
    life.threats(["https://b.example/x", "https://c.example/x"])
    life.run()
    life.clock.advance(DAY + DAY / 2)
    heard.clear()
    expiring = life.run()
    assert [(c.action, c.entries, c.reason, c.run_id) for c in heard] == [
        ("removed", ("a.example/x",), "expired", expiring.run_id)
    ]
    heard.clear()
    path = life.world.tmp / "threatshare.toml"
    assert cli.main(["--config", str(path), "unblock", "life", "b.example", "--reason", "fp"]) == 0
    assert len(heard) == 1
    unblocked = heard[0]
    assert (unblocked.action, unblocked.entries, unblocked.reason) == (
        "removed",
        ("b.example/x",),
        "unblocked",
    )
    assert unblocked.why == "fp" and unblocked.who and unblocked.run_id != expiring.run_id
    assert life.active() == {"c.example/x"}


def test_the_stored_quota_follows_an_unblock(life: Life) -> None:
    """After an unblock removed entries, status's quota shows them gone (no run between)."""
    life.threats([f"https://q{i}.example/x" for i in range(6)])
    assert life.run().state == "ok"
    before = life.status()["quota"]
    path = life.world.tmp / "threatshare.toml"
    assert cli.main(["--config", str(path), "unblock", "life", "q1.example", "q2.example"]) == 0
    after = life.status()["quota"]
    assert after["used"] == before["used"] - 2
    assert after["remaining"] == before["remaining"] + 2
    assert after["used"] == life.zia.quota()["uniqueUrlsProvisioned"]


def test_a_reason_is_one_of_the_known_ones() -> None:
    """The reasons a removal may give are exactly the Reason type's."""
    assert set(REASONS) == set(Reason.__args__)  # type: ignore[attr-defined]
