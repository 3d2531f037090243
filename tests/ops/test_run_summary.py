"""The ``run --once`` summary names what was skipped, rejected and withdrawn, by reason."""

from __future__ import annotations

from threatshare.ops.run_once import summary
from threatshare.state.counters import RunCounters
from threatshare.sync import RunResult


def test_the_summary_lists_reasons_per_instance() -> None:
    """Below the table, one line per instance and kind lists every reason with its count."""
    counters = RunCounters(
        pulled=9,
        pushed=2,
        skipped=5,
        rejected=1,
        removed=4,
        skipped_by_reason={"wrapper": 3, "public_suffix": 2},
        rejected_by_reason={"too_long": 1},
        removed_by_reason={"withdrawn": 4},
        withdrawn_by_reason={"protected_host": 4},
    )
    text = summary(
        [RunResult("urls", "r1", "ok", "ok", counters), RunResult("idle", "r2", "ok", "ok")]
    )
    lines = text.splitlines()
    assert "urls: skipped public_suffix=2, wrapper=3" in lines
    assert "urls: rejected too_long=1" in lines
    assert "urls: withdrawn protected_host=4" in lines
    assert not any(line.startswith("idle:") for line in lines)
