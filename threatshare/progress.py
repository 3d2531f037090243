"""What a run reports while it works: one small event, sent to a sink its caller chooses.

The pipeline knows nothing of terminals. ``run --once`` passes a display that turns the events
into a progress bar or plain lines (:mod:`threatshare.ops.terminal_progress`); everywhere else
the sink ignores them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Phase = Literal["pulling", "pushing", "done"]


@dataclass(frozen=True)
class RunProgress:
    """Where one run of one instance stands; every count is since the run began."""

    instance: str
    phase: Phase
    pages: int = 0  # Mimecast pages pulled
    records: int = 0  # records on those pages
    staged: int = 0  # new entries staged for ZIA
    pushed: int = 0  # entries ZIA accepted
    to_push: int = 0  # entries this push started with
    batch_size: int = 1  # entries per ZIA call
    outcome: str | None = None  # set when the phase is "done"


ProgressSink = Callable[[RunProgress], None]


def ignore(event: RunProgress) -> None:
    """The sink of a run nobody watches."""
