"""The counters of one run (docs/design.md#command-line): one typed record that owns their
names and what each means, so the run, the stored state, ``status --json`` and ``/metrics``
say the same thing.

``removed`` counts every entry a run took out of the category, whatever the reason: expired,
evicted to make room, withdrawn by a changed configuration, or unblocked (an unfinished unblock
the run completed). ``removed_by_reason`` splits it. Entries an admin removed by hand are not
removed by the run and are counted in the lifecycle totals instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from threatshare.indicators.extract import Tally

#: The removal reasons ``removed_by_reason`` splits ``removed`` into.
REMOVAL_REASONS = ("expired", "evicted", "withdrawn", "unblocked")


@dataclass(frozen=True)
class Total:
    """A counter kept as a total over every run, with its metric."""

    name: str
    metric: str
    help: str


#: The counters totalled over every run (``status`` ``totals``, ``/metrics``), in order.
TOTALS: tuple[Total, ...] = (
    Total("pulled", "threatshare_instance_records_pulled_total", "Mimecast records pulled"),
    Total("pushed", "threatshare_instance_entries_pushed_total", "Entries ZIA accepted"),
    Total(
        "rejected",
        "threatshare_instance_entries_rejected_total",
        "Entries or records rejected",
    ),
    Total("skipped", "threatshare_instance_entries_skipped_total", "Entries or records skipped"),
    Total(
        "removed",
        "threatshare_instance_entries_removed_total",
        "Entries removed from the category: expired, evicted, withdrawn by configuration or "
        "unblocked",
    ),
)


def _counts(raw: Any) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): int(v) for k, v in raw.items() if isinstance(v, int)}


@dataclass
class RunCounters:
    """What one run counted (``status --json``'s ``last_run``)."""

    pulled: int = 0
    pushed: int = 0
    rejected: int = 0
    skipped: int = 0
    removed: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    removed_by_reason: dict[str, int] = field(default_factory=dict)
    #: The entries ``removed`` as ``withdrawn``, by the rule they now break (``public_suffix``,
    #: ``allowed``, ``wrapper``…): why today's rules no longer push them.
    withdrawn_by_reason: dict[str, int] = field(default_factory=dict)
    #: A dry run only: the new entries it would have pushed.
    would_push: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record as ``status --json`` shows it (``would_push`` only for a dry run)."""
        out: dict[str, Any] = {
            "pulled": self.pulled,
            "pushed": self.pushed,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "removed": self.removed,
            "skipped_by_reason": dict(self.skipped_by_reason),
            "rejected_by_reason": dict(self.rejected_by_reason),
            "removed_by_reason": dict(self.removed_by_reason),
            "withdrawn": sum(self.withdrawn_by_reason.values()),
            "withdrawn_by_reason": dict(self.withdrawn_by_reason),
        }
        if self.would_push is not None:
            out["would_push"] = self.would_push
        return out

    @classmethod
    def of_run(
        cls,
        tally: Tally,
        pushed: int,
        refused: Mapping[str, str],
        removed: Mapping[str, int],
        withdrawn: Mapping[str, int] | None = None,
    ) -> RunCounters:
        """The counters of a run: what it pulled, pushed, rejected and skipped (by reason), what
        it removed from the category (by reason), and which rules the withdrawn entries broke."""
        rejected = dict(tally.rejected)
        if refused:
            rejected["refused_by_zia"] = rejected.get("refused_by_zia", 0) + len(refused)
        return cls(
            pulled=tally.pulled,
            pushed=pushed,
            rejected=sum(rejected.values()),
            skipped=sum(tally.skipped.values()),
            removed=sum(removed.values()),
            skipped_by_reason=dict(tally.skipped),
            rejected_by_reason=rejected,
            removed_by_reason={reason: count for reason, count in removed.items() if count},
            withdrawn_by_reason=dict(withdrawn or {}),
        )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> RunCounters:
        """The record stored by a run (a counter an earlier version did not keep is 0)."""

        def number(key: str) -> int:
            value = raw.get(key)
            return value if isinstance(value, int) else 0

        would_push = raw.get("would_push")
        return cls(
            pulled=number("pulled"),
            pushed=number("pushed"),
            rejected=number("rejected"),
            skipped=number("skipped"),
            removed=number("removed"),
            skipped_by_reason=_counts(raw.get("skipped_by_reason")),
            rejected_by_reason=_counts(raw.get("rejected_by_reason")),
            removed_by_reason=_counts(raw.get("removed_by_reason")),
            withdrawn_by_reason=_counts(raw.get("withdrawn_by_reason")),
            would_push=would_push if isinstance(would_push, int) else None,
        )

    def totals(self) -> dict[str, int]:
        """The counters added to the totals over every run."""
        return {t.name: getattr(self, t.name) for t in TOTALS}

    # A result reads like the record it is stored as: ``counters["pushed"]``.
    def __getitem__(self, key: str) -> Any:
        return self.as_dict()[key]
