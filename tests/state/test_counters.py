"""The typed record of a run's counters: one owner of their names and meanings, stored and
shown as ``status --json`` documents it, and ``removed`` described honestly."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.sync.lifecycle_world import DAY, Life, make_life
from threatshare.ops.metrics import families
from threatshare.ops.snapshot import take
from threatshare.state.counters import REMOVAL_REASONS, TOTALS, RunCounters
from threatshare.sync.change import REASONS

#: The fields README documents for ``last_run`` in ``status --json``.
DOCUMENTED = {
    "pulled",
    "pushed",
    "rejected",
    "skipped",
    "removed",
    "skipped_by_reason",
    "rejected_by_reason",
    "removed_by_reason",
    "withdrawn",
    "withdrawn_by_reason",
}


def test_a_record_survives_being_stored_and_read() -> None:
    """as_dict and from_dict are inverse, and a stored record missing a counter reads it as 0."""
    counters = RunCounters(
        pulled=5,
        pushed=3,
        removed=2,
        skipped_by_reason={"allowed": 1},
        removed_by_reason={"expired": 2},
    )
    assert RunCounters.from_dict(counters.as_dict()) == counters
    assert RunCounters.from_dict({"pulled": 4}) == RunCounters(pulled=4)
    assert counters["pushed"] == 3 and set(counters.as_dict()) == DOCUMENTED


def test_the_totals_are_the_integer_counters_and_removed_names_every_reason() -> None:
    """Each total is an integer field of the record, and the help text of ``removed`` names
    every reason a run removes an entry for."""
    ints = {f.name for f in dataclasses.fields(RunCounters) if f.type == "int"}
    assert {t.name for t in TOTALS} == ints
    assert set(REMOVAL_REASONS) == set(REASONS)
    removed = next(t for t in TOTALS if t.name == "removed")
    assert all(
        reason in removed.help for reason in ("expired", "evicted", "withdrawn", "unblocked")
    )


@pytest.fixture
def life(tmp_path: Path, redis_url: str) -> Iterator[Life]:
    with make_life(tmp_path, redis_url) as life:
        yield life


def test_status_and_metrics_show_the_runs_removals_by_reason(life: Life) -> None:
    """After a run that expired an entry, status's last_run has exactly the documented fields
    with the removal split by reason, and the metric of removals counts it."""
    life.configure(expire_after="3d", settings={"reconcile_every": "60d"})
    life.threats(["https://gone.example/a", "https://stays.example/b"])
    assert life.run().outcome == "ok"
    life.clock.advance(2 * DAY)
    life.threats(["https://stays.example/b"])
    life.run()
    life.clock.advance(DAY + timedelta(hours=12))
    assert life.run().counters["removed_by_reason"] == {"expired": 1}
    record = life.status()
    assert set(record["last_run"]) == DOCUMENTED
    assert record["last_run"]["removed"] == 1
    assert record["last_run"]["removed_by_reason"] == {"expired": 1}
    assert record["totals"] == {"pulled": 3, "pushed": 2, "rejected": 0, "skipped": 1, "removed": 1}
    snapshot = take(life.config, life.redis, life.clock)
    metric = next(m for m in families(snapshot) if m.name == "threatshare_instance_entries_removed")
    assert "withdrawn" in metric.documentation
    assert [s.value for s in metric.samples if s.name.endswith("_total")] == [1.0]
