"""When a ZIA tenant may be activated, and when its instances run for that activation
(docs/design.md#activation, docs/design.md#pacing).

ZIA allows :data:`~threatshare.zia.ratelimit.ACTIVATIONS_PER_HOUR` activations per tenant per
hour (docs/design.md#limits-of-zia). Below half of that in the last hour a tenant is activated
as soon as it has changes (once per coalescing slot); from there on it is *paced*: one
activation per :data:`PACED_GAP`, which sustains under that budget and leaves
room for a ``run --once`` or an ``unblock`` now and then. The fleet's rate limiter has the last
word either way; this module only decides when asking it is worth a job.

A paced tenant's latency budget. A threat recorded at ``T`` can be read once it is ``settle``
old; it then waits for a run of its instance, that run pushes it, and the push waits for the
tenant's next activation. Were runs and activations on phases of their own, the two waits would
add up: up to ``interval`` (60 s) for a run plus up to ``PACED_GAP`` (94.5 s) for the
activation, about 155 s at p95 with ``settle`` at 30 s. So a paced tenant gets a *round*: its
instances run :data:`ROUND_LEAD` seconds before its next activation is allowed, outside their
interval slots, and the activation follows as soon as the last of them is done (or
:data:`ROUND_WAIT` after it was allowed, whichever comes first). The waits merge into one:

    threat → active  ≈  settle + U(0, PACED_GAP) + the round (runs, pushes at ZIA's 1 PUT/s)

so p95 ≈ settle + 0.95 × 94.5 s + ~10 s. ZIA's own floor is the activation wait alone: with
one activation per 90 s, 45 s on average and 85.5 s at p95.

Every decision is a pure function of the tenant's activation log and the clock, both read from
Redis by the scheduler, so any number of schedulers agree on it: a round is named after the
activation it follows (:attr:`Round.cycle`), and its jobs' ids after the round.
"""

from __future__ import annotations

from dataclasses import dataclass

from threatshare.zia.ratelimit import ACTIVATIONS_PER_HOUR, HOUR

PACE_FROM = ACTIVATIONS_PER_HOUR // 2
PACED_GAP = HOUR / ACTIVATIONS_PER_HOUR * 1.05
#: Seconds before a paced tenant's next activation at which its instances run: about what a
#: round of a tenant's instances takes (their runs, and their pushes at ZIA's 1 PUT a second).
ROUND_LEAD = 10.0
#: The longest an allowed activation waits for its round's stragglers: beyond it, what they
#: push waits for the next activation rather than holding up everything else.
ROUND_WAIT = 20.0


@dataclass(frozen=True)
class TenantActivations:
    """A tenant's activations within the last hour, from the fleet's rate limiter."""

    last_hour: int
    seconds_since_last: float | None
    #: Seconds until the hourly window has room for one more (0 when it has room now).
    hour_frees_in: float = 0.0
    #: When the newest activation was made (epoch seconds of the scheduler's clock).
    newest_at: float | None = None

    @property
    def paced(self) -> bool:
        return self.last_hour >= PACE_FROM and self.seconds_since_last is not None


def budget_wait(recent: TenantActivations) -> float:
    """Seconds until the pacing rule allows the tenant's next activation (0: now)."""
    if not recent.paced:
        return recent.hour_frees_in if recent.last_hour >= ACTIVATIONS_PER_HOUR else 0.0
    assert recent.seconds_since_last is not None
    return max(0.0, recent.hour_frees_in, PACED_GAP - recent.seconds_since_last)


def activation_due(recent: TenantActivations, round_pending: bool = False) -> bool:
    """Whether a marked tenant may get an activation job now: the budget allows it, and the
    round feeding it (if one is still running) is done or has had :data:`ROUND_WAIT`."""
    if recent.last_hour >= ACTIVATIONS_PER_HOUR or budget_wait(recent) > 0:
        return False
    if round_pending and recent.paced:
        assert recent.seconds_since_last is not None
        return recent.seconds_since_last >= PACED_GAP + ROUND_WAIT
    return True


@dataclass(frozen=True)
class Round:
    """A paced tenant's run of all its instances just before its next activation."""

    #: The second of the activation this round follows: the same on every scheduler, and
    #: another one after the next activation.
    cycle: int
    #: Seconds until the budget allows the activation the round feeds.
    activation_in: float


def round_for(recent: TenantActivations) -> Round | None:
    """The round of a paced tenant, or None (not paced, or no activation to prepare yet).

    A round exists from :data:`ROUND_LEAD` seconds before the tenant's next activation is
    allowed until it is; its jobs are enqueued within that span. Once the activation is
    allowed and nothing was marked, there is no round: new changes are then activated as
    soon as a run has pushed them."""
    if not recent.paced or recent.newest_at is None:
        return None
    wait = budget_wait(recent)
    if not 0 < wait <= ROUND_LEAD:
        return None
    return Round(int(recent.newest_at), wait)


def recent_from_log(times: list[float], now: float) -> TenantActivations:
    """The tenant's activations, given the times (epoch seconds, any order) of its activation
    calls in the fleet limiter's log and the clock. ``hour_frees_in`` counts ZIA's window from
    the call that will leave it first; the limiter adds its own small margin on top."""
    window = sorted(t for t in times if t > now - HOUR)
    if not window:
        return TenantActivations(0, None)
    excess = len(window) - ACTIVATIONS_PER_HOUR
    frees_in = window[excess] + HOUR - now if excess >= 0 else 0.0
    return TenantActivations(len(window), now - window[-1], max(0.0, frees_in), window[-1])
