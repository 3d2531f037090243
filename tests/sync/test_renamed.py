"""A renamed instance (docs/design.md#reconciliation): the category of an instance no longer
configured, found by name by the instance now configured with it, is adopted; its entries age
as usual, and the adoption is said once in the log and in status."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from tests.e2e import FAST
from tests.sync.lifecycle_world import CATEGORY, DAY, INSTANCE, Life, make_life
from threatshare.ops.live_check import check_live
from threatshare.ops.status import render_table
from threatshare.runtime import Runtime
from threatshare.state.ledger import Ledger
from threatshare.sync import sync_instance
from threatshare.sync.activation import activate_pending
from threatshare.sync.lifecycle import renamed_from
from threatshare.zia.categories import category_description


@pytest.fixture
def life(tmp_path: Path, redis_url: str) -> Iterator[Life]:
    with make_life(tmp_path, redis_url) as life:
        yield life


def _run_as(life: Life, name: str, instances: dict[str, dict[str, object]]) -> str:
    config = life.world.config(instances)
    rt = Runtime(config, life.redis, policy=FAST, zia_reauth_wait=0.05, now=life.clock)
    try:
        result = sync_instance(rt, name)
        activate_pending(rt)
    finally:
        rt.close()
    return result.outcome


def test_the_description_names_a_renamed_instance_only_when_it_is_gone() -> None:
    """Only an instance that is not configured (and not this one) counts as renamed."""
    old = category_description("old", "shared")
    assert renamed_from(old, "life", {"life"}) == "old"
    assert renamed_from(old, "life", {"life", "old"}) is None
    assert renamed_from(old, "old", {"old"}) is None
    assert renamed_from("an admin's own category", "life", {"life"}) is None


def test_a_renamed_instance_adopts_its_category_and_says_so_once(life: Life) -> None:
    """Instance "old" shares two entries; renamed "life", it adopts them (none foreign), logs
    it once, shows it in status, and the entries expire on schedule."""
    old = {**INSTANCE, "expire_after": "3d"}
    life.threats(["https://one.example/a", "https://two.example/b"])
    assert _run_as(life, "old", {"old": old}) == "ok"
    life.configure(expire_after="3d", settings={"reconcile_every": "1h"})
    with structlog.testing.capture_logs() as logs:
        assert life.run().outcome == "ok"
        life.clock.advance(DAY)
        assert life.run().outcome == "ok"
    said = [e for e in logs if e["event"] == "lifecycle.renamed_instance_adopted"]
    assert len(said) == 1 and said[0]["previous"] == "old"
    status = life.status()
    assert status["lifecycle"]["foreign"] == 0
    assert status["renamed_from"]["instance"] == "old"
    assert "adopted the category of old" in render_table([status])
    assert set(Ledger(life.redis).scan("life")) == {"one.example/a", "two.example/b"}
    life.clock.advance(3 * DAY)
    assert life.run().counters["removed_by_reason"] == {"expired": 2}
    assert life.active() == set()


def test_a_category_of_a_configured_instance_stays_foreign(life: Life) -> None:
    """While "old" is still configured (with another category), its entries in the category
    "life" finds are not adopted."""
    life.zia.admin_create(CATEGORY, ["kept.example"], category_description("old"))
    other = {**INSTANCE, "category": "Other URLs"}
    instances = {"life": INSTANCE, "old": other}
    assert _run_as(life, "life", instances) == "ok"
    status = life.status()
    assert status["lifecycle"]["foreign"] == 1 and status["renamed_from"] is None


def test_check_live_warns_of_categories_of_instances_no_longer_configured(life: Life) -> None:
    """check --live names a category of an instance no longer configured: adopted when an
    instance is configured with it, stranded when none is; the check itself still passes."""
    life.zia.admin_create(CATEGORY, ["a.example"], category_description("old"))
    life.zia.admin_create("Stranded URLs", ["b.example"], category_description("gone"))
    life.zia.admin_create("Admin URLs", ["c.example"], "an admin's own")
    result = check_live(life.config, life.redis)
    assert result.ok, result.lines
    warnings = [line for line in result.lines if line.startswith("warn ")]
    assert len(warnings) == 2
    assert f"category {CATEGORY!r} names instance 'old'" in warnings[0]
    assert "instance 'life', configured with it, adopts its entries" in warnings[0]
    assert "'Stranded URLs' names instance 'gone'" in warnings[1]
    assert "never expire" in warnings[1]
