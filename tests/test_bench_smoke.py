"""Every benchmark of ``python -m bench`` at small sizes, so the figures README quotes stay
reproducible: a measurement that errors or misses a target fails here.

Targets that count (ZIA calls per run, 429 answers, records shared, activations per hour, peak
memory) are held as they are. Timing targets are held with a wide margin, as this runs on
busy CI machines; the full-size figures come from ``python -m bench`` (bench/README.md). The
fleet runs its warm start only, with a 10 s interval: the steady state's pace is ZIA's 90 s
between activations, minutes per sample, which is the full bench's business.
"""

from __future__ import annotations

import dataclasses

import pytest

from bench import backlog, calls, fleet, lifecycle, throughput

#: The floor of the throughput smoke: a fiftieth of the target, so a loaded machine passes and
#: a regression of the code by an order of magnitude and more does not.
SMOKE_RECORDS_PER_S = throughput.TARGET / 50

pytestmark = pytest.mark.slow


def test_throughput_runs_every_mix_above_a_floor(redis_url: str) -> None:
    """Normalisation and dedupe run over every record mix without error, above the floor."""
    report = throughput.measure(redis_url, 4_000)
    assert "error" not in report
    assert report["min_records_per_s"] >= SMOKE_RECORDS_PER_S, report
    assert report["worst_case_records_per_s"] > 0


def test_calls_stay_within_the_bound_and_nothing_new_costs_nothing(redis_url: str) -> None:
    """Runs adding 0, 1 and 1,000 entries make at most a quota read and ⌈N/batch⌉ PUTs (plus
    the activation and the first run's look-up), and every entry ends active."""
    report = calls.measure(redis_url, (0, 1, 1_000))
    assert report["meets_target"], report["runs"]
    assert report["all_active"]
    runs = report["runs"]
    nothing_new = next(run for run in runs if run["new_entries"] == 0 and not run["first_run"])
    assert nothing_new["zia_calls"] == 0, nothing_new


def test_backlog_shares_every_record_under_the_memory_limit(redis_url: str) -> None:
    """A 30-day backlog (small here) is shared whole, peak memory under 200 MB, no 429."""
    report = backlog.measure(redis_url, (5_000,))
    for run in report["runs"]:
        assert run["outcome"] == "ok", run
        assert run["active_in_zia"] == run["records"], run
        assert run["zia_429"] == 0 and run["zia_limit_violations"] == 0, run
    assert report["under_limit"], report["runs"]


def test_fleet_warm_start_shares_every_threat_within_zias_limits(redis_url: str) -> None:
    """A small fleet (real scheduler and worker processes) makes every threat active in every
    category, with no 429, no limit exceeded, ≤ 40 activations an hour and p95 ≤ 120 s."""
    shape = dataclasses.replace(
        fleet.WARM_START,
        instances=12,
        tenants=3,
        accounts=3,
        workers=2,
        threats_per_minute=18.0,
        inject_for=10.0,
        drain_for=60.0,
        interval_s=10,
    )
    report = fleet.measure(redis_url, shape)
    assert report["never_active"] == 0, report
    assert report["zia_429"] == 0 and report["zia_limit_violations"] == 0, report
    assert report["most_activations_in_an_hour"] <= fleet.ACTIVATIONS_PER_HOUR
    assert report["states"] == {"ok": shape.instances}, report["states"]
    assert report["exit_codes"] == [0] * (1 + shape.workers)
    assert report["meets_target"], report
    assert report["scheduler"]["cpu_ms_per_tick"] is not None
    assert report["redis_bytes_per_instance"] > 0


def test_lifecycle_keeps_the_category_at_the_model(redis_url: str) -> None:
    """Simulated days (a short year): the category matches the model every day, and expiry
    costs ⌈E/batch⌉ PUTs a day."""
    report = lifecycle.measure(redis_url, days=14, rate=40, resightings=12, expire_days=4, batch=40)
    assert report["category_matches_model_every_day"], report["days_not_matching"]
    assert report["remove_puts_are_ceil_e_over_batch"], report["calls_of_the_last_day"]
    assert report["totals"]["expired"] > 0
    assert report["meets_target"], report
