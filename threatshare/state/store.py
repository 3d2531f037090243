"""Per-instance state in Redis (docs/design.md#state-in-redis): the state machine, bookmark,
errors, the last run's counters (:class:`~threatshare.state.counters.RunCounters`) and their
totals; and each ZIA tenant's activation count.

One hash per instance holds the small fields. The bookmark only moves through
:meth:`Store.finish_ok`, which is fenced by the run's lock token
(:mod:`threatshare.state.lock`): a run whose lock expired cannot move it. The entries of an
instance are its ledger's (:mod:`threatshare.state.ledger`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import redis

from threatshare import keys
from threatshare.state.counters import TOTALS, RunCounters
from threatshare.state.fenced import FencedWriter
from threatshare.state.lock import RunLock
from threatshare.timestamps import from_iso, to_iso

State = Literal["new", "ok", "retrying", "halted", "disabled"]

# Moves the bookmark and records success only while the caller still holds the lock.
_FENCED_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], unpack(cjson.decode(ARGV[2])))
redis.call('HDEL', KEYS[2], 'last_error', 'error_since', 'halted_since', 'halted_fingerprint')
return 1
"""


@dataclass
class InstanceState:
    """What Redis knows of one instance; every field is optional until a first run."""

    name: str
    state: State = "new"
    bookmark: datetime | None = None
    last_success: datetime | None = None
    last_attempt: datetime | None = None
    last_error: dict[str, str] | None = None
    error_since: datetime | None = None
    halted_since: datetime | None = None
    halted_fingerprint: str | None = None
    category_id: str | None = None
    fingerprint: str | None = None
    lost_span: dict[str, str] | None = None
    last_run: RunCounters = field(default_factory=RunCounters)
    totals: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None
    #: The span of one chunk of the window, as the last runs adapted it (None: the default).
    chunk_span: timedelta | None = None
    #: How far the clock of the worker that ran the last run was ahead of Mimecast's
    #: (behind when negative), in seconds; None before a run read Mimecast's clock.
    clock_skew: int | None = None


class Store:
    """State of every instance, in one Redis database."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._finish = client.register_script(_FENCED_FINISH)
        self._fenced = FencedWriter(client)

    # --- reading ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(v.decode() for v in self.redis.smembers(keys.instances_index()))

    def load(self, name: str) -> InstanceState:
        raw = {
            k.decode(): v.decode() for k, v in self.redis.hgetall(keys.instance_state(name)).items()
        }
        st = InstanceState(name=name)
        if not raw:
            return st
        st.state = raw.get("state", "new")  # type: ignore[assignment]
        for attr in ("bookmark", "last_success", "last_attempt", "error_since", "halted_since"):
            setattr(st, attr, from_iso(raw.get(attr)))
        for attr in ("category_id", "fingerprint", "halted_fingerprint", "run_id"):
            setattr(st, attr, raw.get(attr) or None)
        for attr in ("last_error", "lost_span"):
            if raw.get(attr):
                setattr(st, attr, json.loads(raw[attr]))
        if raw.get("last_run"):
            st.last_run = RunCounters.from_dict(json.loads(raw["last_run"]))
        st.totals = {t.name: int(raw.get(f"total_{t.name}", 0)) for t in TOTALS}
        if raw.get("chunk_seconds"):
            st.chunk_span = timedelta(seconds=float(raw["chunk_seconds"]))
        if raw.get("clock_skew"):
            st.clock_skew = int(raw["clock_skew"])
        return st

    def states(self, names: list[str]) -> dict[str, State]:
        """The state of each of ``names`` in one round trip ("new" for one never run), for a
        scheduler that orders thousands of instances every slot."""
        with self.redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hget(keys.instance_state(name), "state")
            found = pipe.execute()
        states: dict[str, State] = {}
        for name, raw in zip(names, found, strict=True):
            states[name] = raw.decode() if raw else "new"  # type: ignore[assignment]
        return states

    # --- writing state ---------------------------------------------------------------------

    def _set(self, name: str, mapping: dict[str, Any]) -> None:
        values = {k: v for k, v in mapping.items() if v is not None}
        with self.redis.pipeline() as pipe:
            pipe.sadd(keys.instances_index(), name)
            if values:
                pipe.hset(keys.instance_state(name), mapping=values)
            gone = [k for k, v in mapping.items() if v is None]
            if gone:
                pipe.hdel(keys.instance_state(name), *gone)
            pipe.execute()

    def begin(self, name: str, run_id: str, at: datetime) -> None:
        self._set(name, {"last_attempt": to_iso(at), "run_id": run_id})

    def set_clock(self, name: str, lock: RunLock, at: datetime, clock_skew: int | None) -> None:
        """The run's start by Mimecast's clock, once read, and how far the clock of its worker
        was ahead of Mimecast's (seconds; behind when negative), fenced by ``lock``."""
        fields: list[str] = ["last_attempt", to_iso(at) or ""]
        if clock_skew is not None:
            fields += ["clock_skew", str(clock_skew)]
        self._fenced.call(name, lock, "HSET", keys.instance_state(name), *fields)

    def set_category(self, name: str, category_id: str | None) -> None:
        self._set(name, {"category_id": category_id})

    def set_disabled(self, name: str) -> None:
        self._set(name, {"state": "disabled"})

    def set_lost_span(self, name: str, start: datetime, end: datetime) -> None:
        self._set(name, {"lost_span": json.dumps({"from": to_iso(start), "to": to_iso(end)})})

    def record_run(
        self,
        name: str,
        counters: RunCounters,
        *,
        outcome: str | None = None,
        error_code: str | None = None,
        duration: float | None = None,
    ) -> None:
        """The last run's counters, and the totals over every run; with ``outcome``, also the
        run counts by outcome and error code and the last duration
        (docs/design.md#operations-endpoint), in the same round trip."""
        with self.redis.pipeline() as pipe:
            stored = json.dumps(counters.as_dict(), sort_keys=True)
            pipe.hset(keys.instance_state(name), "last_run", stored)
            for counter, count in counters.totals().items():
                if count:
                    pipe.hincrby(keys.instance_state(name), f"total_{counter}", count)
            stats = keys.instance_run_stats(name)
            if outcome is not None:
                pipe.hincrby(stats, f"runs:{outcome}", 1)
            if error_code is not None:
                pipe.hincrby(stats, f"errors:{error_code}", 1)
            if duration is not None:
                pipe.hset(stats, "last_duration_seconds", f"{max(0.0, duration):.3f}")
            pipe.execute()

    def move_bookmark(self, name: str, lock: RunLock, bookmark: datetime) -> None:
        """The bookmark moved to ``bookmark`` after a fully shared chunk of a window
        (docs/design.md#state-in-redis), fenced by ``lock`` (LockLost when the run no longer holds
        it)."""
        self._fenced.call(
            name, lock, "HSET", keys.instance_state(name), "bookmark", to_iso(bookmark)
        )

    def set_chunk_span(self, name: str, lock: RunLock, span: timedelta) -> None:
        """The chunk span the next run works with (docs/design.md#the-fleet), fenced by ``lock``."""
        seconds = f"{span.total_seconds():g}"
        self._fenced.call(name, lock, "HSET", keys.instance_state(name), "chunk_seconds", seconds)

    def finish_ok(
        self, name: str, lock: RunLock, bookmark: datetime | None, at: datetime, fingerprint: str
    ) -> bool:
        """State ``ok``, the bookmark moved to ``bookmark`` (None: left where it is), the error
        cleared, the configuration it ran with remembered; False (and no change) when the run
        no longer holds the lock."""
        fields = ["state", "ok", "last_success", to_iso(at), "fingerprint", fingerprint]
        if bookmark is not None:
            fields += ["bookmark", to_iso(bookmark)]
        done = self._finish(
            keys=[keys.instance_lock(name), keys.instance_state(name)],
            args=[lock.token, json.dumps(fields)],
        )
        return bool(done)

    def finish_error(
        self, name: str, error: dict[str, str], at: datetime, *, halt: bool, fingerprint: str
    ) -> InstanceState:
        """Record a failed run; ``halt`` for a permanent error. Returns the state before."""
        before = self.load(name)
        mapping: dict[str, Any] = {
            "last_error": json.dumps({**error, "at": to_iso(at)}),
            "error_since": to_iso(before.error_since or at),
            "state": "halted" if halt else ("halted" if before.state == "halted" else "retrying"),
        }
        if halt and before.state != "halted":
            mapping["halted_since"] = to_iso(at)
        if halt:
            mapping["halted_fingerprint"] = fingerprint
        self._set(name, mapping)
        return before

    def resume(self, name: str) -> bool:
        """Clear ``halted`` so the next run tries again; False when it was not halted."""
        if self.load(name).state != "halted":
            return False
        self._set(name, {"state": "retrying", "halted_fingerprint": None})
        return True

    # --- tenants ---------------------------------------------------------------------------

    def record_activation(self, tenant: str, at: datetime) -> None:
        """One more activation of the tenant, and its time (docs/design.md#operations-endpoint)."""
        with self.redis.pipeline() as pipe:
            pipe.hincrby(keys.tenant_stats(tenant), "activations", 1)
            pipe.hset(keys.tenant_stats(tenant), "last_activation", to_iso(at) or "")
            pipe.execute()
