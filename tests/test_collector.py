"""The garbage collector's pace in a threatshare process (docs/design.md#performance)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from threatshare.cli import main
from threatshare.collector import YOUNG_THRESHOLD, pace_collector


@pytest.fixture
def threshold() -> Iterator[None]:
    """The process's thresholds are restored after the test."""
    before = gc.get_threshold()
    enabled = gc.isenabled()
    yield
    gc.set_threshold(*before)
    if enabled:
        gc.enable()


@pytest.mark.usefixtures("threshold")
def test_every_command_collects_the_young_generation_less_often(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A command raises the young generation's threshold and leaves the older ones as they
    were."""
    gc.set_threshold(700, 11, 12)
    with pytest.raises(SystemExit) as exited:  # argparse's own --version action
        main(["--version"])
    assert exited.value.code == 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 11, 12)
    assert capsys.readouterr().out.strip()


@pytest.mark.usefixtures("threshold")
def test_a_slower_pace_or_a_collector_turned_off_is_kept() -> None:
    """A process that already collects less often, or not at all, is left so."""
    gc.set_threshold(YOUNG_THRESHOLD * 2, 10, 10)
    pace_collector()
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD * 2
    gc.set_threshold(0, 10, 10)
    pace_collector()
    assert gc.get_threshold()[0] == 0
