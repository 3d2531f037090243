"""What the fleet bench reads off a finished fleet: the emulators' activation counts, the
scheduler's and workers' logs, Redis' memory."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from threatshare.sandbox.zia import ZiaEmulator
from threatshare.sandbox.zia_limits import counts_toward_limits

ACTIVATE_BUCKET = "POST /status/activate"
HOUR = 3600.0


def most_in_an_hour(emulator: ZiaEmulator) -> int:
    """The most activations the tenant answered within any rolling hour, history included."""
    stamps = sorted(
        c.at
        for c in emulator.calls
        if c.bucket == ACTIVATE_BUCKET and counts_toward_limits(c.status)
    )
    most, first = 0, 0
    for last, at in enumerate(stamps):
        while stamps[first] <= at - HOUR:
            first += 1
        most = max(most, last - first + 1)
    return most


def scheduler_figures(log: Path) -> dict[str, Any]:
    """The scheduler's own account of its ticks, from its last ``scheduler.stop`` line."""
    for line in reversed(log.read_text(errors="replace").splitlines()):
        if '"scheduler.stop"' in line:
            event = json.loads(line)
            return {"ticks": event.get("ticks"), "cpu_ms_per_tick": event.get("cpu_ms_per_tick")}
    return {"ticks": None, "cpu_ms_per_tick": None}


def runs_by_kind(logs: list[Path]) -> Counter[str]:
    """The runs the workers began, by the kind of job (``sync`` of a slot, ``round``)."""
    kinds: Counter[str] = Counter()
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if '"run.start"' in line:
                job_id = str(json.loads(line).get("job_id", ""))
                kinds[job_id.split("-", 1)[0]] += 1
    return kinds


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])
