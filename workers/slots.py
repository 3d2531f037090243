"""The order in which a slot's sync jobs go on the queue (docs/design.md#the-fleet).

Three rules, each against a way a large fleet starves some of its instances:

- *Tenants interleaved.* Consecutive jobs belong to different ZIA tenants, so the workers taking
  them wait on different tenants' rate limits; instances of one tenant side by side (as a
  configuration tends to list them) would have every worker queue up behind one tenant's
  budget of one call a second.
- *Rotated by slot.* A job still queued when its slot ends is dropped. Were every slot queued in
  the same order, a fleet with more runs than its workers can do in a slot would drop the same
  instances every time; rotating the start spreads the shortfall over every instance.
- *First runs first.* An instance that has never had a run goes on a queue of its own, which
  workers empty before the fleet's queue, so its first run waits neither for the slot's other
  runs nor for the rounds and activations that keep the workers busy: it runs within its
  first slot, whatever the size of the fleet (docs/design.md#the-fleet). Rounds take only
  instances whose last run was ok (:func:`round_members`): a first run (a category to find or
  create, a backlog to pull) is no run to hold a tenant's activation for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import zip_longest

from threatshare.state.store import State


def interleaved(instances_of: Mapping[str, Sequence[str]]) -> list[str]:
    """Every instance, taking one of each tenant in turn (tenants and instances sorted)."""
    columns = [sorted(instances_of[tenant]) for tenant in sorted(instances_of)]
    return [name for row in zip_longest(*columns) for name in row if name is not None]


def rotated(order: Sequence[str], slot: int) -> list[str]:
    """``order`` started at a place that moves on with every slot."""
    if not order:
        return []
    start = (slot * 7919) % len(order)  # a prime step: consecutive slots start far apart
    return [*order[start:], *order[:start]]


def first_runs_first(
    order: Sequence[str], states: Mapping[str, State]
) -> tuple[list[str], list[str]]:
    """``order`` split into the instances never run (state ``new``) and the others."""
    new = [name for name in order if states.get(name, "new") == "new"]
    seen = [name for name in order if states.get(name, "new") != "new"]
    return new, seen


def round_members(names: Sequence[str], states: Mapping[str, State]) -> list[str]:
    """The instances of a paced tenant that run in its round: those whose last run was ok."""
    return [name for name in names if states.get(name) == "ok"]
