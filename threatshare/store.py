"""Per-instance state in Redis (S5): state machine, bookmark, errors, counters, pushed entries.

One hash per instance holds the small fields (see :data:`FIELDS`); the entries pushed to the
category live in their own hash (entry -> first and last seen); the entries of the window being
worked on wait in a sorted set scored by record time, so a run never holds a window in memory
and can push newest first. The bookmark only moves through :meth:`Store.finish_ok`, which is
fenced by the run's lock token: a run whose lock expired cannot move it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import redis
import structlog
from redis.lock import Lock

from threatshare import keys

log = structlog.get_logger(__name__)

State = Literal["new", "ok", "retrying", "halted", "disabled"]
COUNTERS = ("pulled", "pushed", "rejected", "skipped", "removed")

# Moves the bookmark and records success only while the caller still holds the lock.
_FENCED_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], unpack(cjson.decode(ARGV[2])))
redis.call('HDEL', KEYS[2], 'last_error', 'error_since', 'halted_since', 'halted_fingerprint')
return 1
"""


def to_iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def from_iso(value: str | bytes | None) -> datetime | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


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
    last_run: dict[str, Any] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    run_id: str | None = None


class RunLock:
    """The lock of one run: a short lease that :meth:`kept_alive` renews while the run lives,
    so a dead worker's instance is free again within one lease. ``token`` fences the writes
    that must come from its owner."""

    def __init__(self, lock: Lock, lease: float) -> None:
        self.lock = lock
        self.lease = lease

    @property
    def token(self) -> str:
        raw = self.lock.local.token
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    @contextlib.contextmanager
    def kept_alive(self) -> Iterator[None]:
        """Renew the lease every third of it, from a thread, until the block ends."""
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.lease / 3):
                try:
                    self.lock.reacquire()
                except redis.exceptions.LockError:
                    return  # lapsed or taken over: the run's fenced writes will refuse
                except redis.RedisError as exc:
                    log.warning("lock.renew_failed", error=type(exc).__name__)

        thread = threading.Thread(target=renew, name="run-lock", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

    def release(self) -> None:
        # An expired lock may be another run's now: there is nothing of ours to release.
        with contextlib.suppress(redis.exceptions.LockError):
            self.lock.release()


class Store:
    """State of every instance, in one Redis database."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client
        self._finish = client.register_script(_FENCED_FINISH)

    # --- lock ------------------------------------------------------------------------------

    def try_lock(self, name: str, ttl: float) -> RunLock | None:
        """The instance's run lock, or None when another run holds it (fleet-wide)."""
        lock = self.redis.lock(
            keys.instance_lock(name), timeout=ttl, blocking=False, thread_local=False
        )
        return RunLock(lock, ttl) if lock.acquire(token=uuid.uuid4().hex) else None

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
        for attr in ("last_error", "lost_span", "last_run"):
            if raw.get(attr):
                setattr(st, attr, json.loads(raw[attr]))
        st.totals = {c: int(raw.get(f"total_{c}", 0)) for c in COUNTERS}
        return st

    def entry_count(self, name: str) -> int:
        return int(self.redis.hlen(keys.instance_entries(name)))

    def entries(self, name: str) -> set[str]:
        return {k.decode() for k in self.redis.hkeys(keys.instance_entries(name))}

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

    def set_category(self, name: str, category_id: str | None) -> None:
        self._set(name, {"category_id": category_id})

    def set_disabled(self, name: str) -> None:
        self._set(name, {"state": "disabled"})

    def set_lost_span(self, name: str, start: datetime, end: datetime) -> None:
        self._set(name, {"lost_span": json.dumps({"from": to_iso(start), "to": to_iso(end)})})

    def record_run(self, name: str, counters: dict[str, Any]) -> None:
        """The last run's counters, and the totals over every run."""
        with self.redis.pipeline() as pipe:
            pipe.hset(keys.instance_state(name), "last_run", json.dumps(counters, sort_keys=True))
            for counter in COUNTERS:
                if counters.get(counter):
                    pipe.hincrby(keys.instance_state(name), f"total_{counter}", counters[counter])
            pipe.execute()

    def finish_ok(
        self, name: str, lock: RunLock, bookmark: datetime, at: datetime, fingerprint: str
    ) -> bool:
        """State ``ok``, the bookmark moved to ``bookmark``, the error cleared, the
        configuration it ran with remembered; False (and no change) when the run no longer
        holds the lock."""
        fields = ["state", "ok", "bookmark", to_iso(bookmark), "last_success", to_iso(at)]
        fields += ["fingerprint", fingerprint]
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

    # --- entries ---------------------------------------------------------------------------

    def split_known(self, name: str, entries: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        """``entries`` split into those not yet pushed to the category (dedupe, S2) and those
        already there, with their first-seen time; one round trip."""
        if not entries:
            return [], {}
        found = self.redis.hmget(keys.instance_entries(name), entries)
        fresh: list[str] = []
        known: dict[str, str] = {}
        for entry, seen in zip(entries, found, strict=True):
            if seen is None:
                fresh.append(entry)
            else:
                known[entry] = seen.split(b" ", 1)[0].decode()
        return fresh, known

    def stage(self, name: str, timed_entries: dict[str, float]) -> None:
        """Queue entries of the current window for pushing, scored by record time."""
        if timed_entries:
            # GT: an entry seen twice keeps its newest record time (and new ones are added).
            self.redis.zadd(keys.instance_pending(name), timed_entries, gt=True)

    def record_page(
        self, name: str, known: dict[str, str], staged: dict[str, float], at: datetime
    ) -> None:
        """One page's dedupe outcome in one round trip: entries already in the category get
        their last-seen time (``known``: entry -> first seen, as :meth:`split_known` gives
        it), new ones are staged (:meth:`stage`)."""
        if not known and not staged:
            return
        stamp = int(at.timestamp())
        with self.redis.pipeline(transaction=False) as pipe:
            if known:
                mapping = {entry: f"{first} {stamp}" for entry, first in known.items()}
                pipe.hset(keys.instance_entries(name), mapping=mapping)
            if staged:
                pipe.zadd(keys.instance_pending(name), staged, gt=True)
            pipe.execute()

    def staged_count(self, name: str) -> int:
        return int(self.redis.zcard(keys.instance_pending(name)))

    def staged_newest_first(self, name: str, chunk: int = 5000) -> Iterator[list[str]]:
        """The staged entries, newest record first, ``chunk`` at a time (bounded memory)."""
        total = self.staged_count(name)
        for start in range(0, total, chunk):
            raw = self.redis.zrevrange(keys.instance_pending(name), start, start + chunk - 1)
            yield [v.decode() for v in raw]

    def clear_staged(self, name: str) -> None:
        self.redis.delete(keys.instance_pending(name))

    def record_pushed(self, name: str, entries: Iterable[str], at: datetime) -> None:
        """Remember entries ZIA accepted: first seen now, last seen now."""
        stamp = int(at.timestamp())
        mapping = {entry: f"{stamp} {stamp}" for entry in entries}
        if mapping:
            self.redis.hset(keys.instance_entries(name), mapping=mapping)

    def restage_pushed(self, name: str) -> int:
        """Stage again everything the category held (it was deleted in ZIA) and forget it was
        pushed; returns how many entries are staged."""
        batch: dict[str, float] = {}
        for entry, value in self.redis.hscan_iter(keys.instance_entries(name), count=1000):
            batch[entry.decode()] = float(value.split(b" ", 1)[-1])
            if len(batch) >= 1000:
                self.stage(name, batch)
                batch = {}
        self.stage(name, batch)
        self.redis.delete(keys.instance_entries(name))
        return self.staged_count(name)

    def record_removed(self, name: str, entries: Sequence[str]) -> None:
        if entries:
            self.redis.hdel(keys.instance_entries(name), *entries)

    # --- tenants ---------------------------------------------------------------------------

    def mark_unactivated(self, tenant: str) -> None:
        """A change was, or is about to be, staged in the tenant: it must be activated.

        Each mark bumps a generation; an activation clears the mark only if no mark came
        after it read the generation. Runs mark before their first change (a crash still
        leaves the mark) and after each change (so a change that lands while an activation
        is under way is not cleared with it)."""
        with self.redis.pipeline() as pipe:
            pipe.incr(keys.tenant_unactivated(tenant))
            pipe.sadd(keys.tenants_unactivated(), tenant)
            pipe.execute()

    def unactivated_generation(self, tenant: str) -> int | None:
        raw = self.redis.get(keys.tenant_unactivated(tenant))
        return None if raw is None else int(raw)

    def unactivated_tenants(self) -> list[str]:
        return sorted(v.decode() for v in self.redis.smembers(keys.tenants_unactivated()))

    def clear_unactivated(self, tenant: str, generation: int) -> bool:
        """Activation done for marks up to ``generation``; False when a later mark exists."""

        def clear(pipe: redis.client.Pipeline) -> bool:
            current = pipe.get(keys.tenant_unactivated(tenant))
            pipe.multi()
            if current is None or int(current) != generation:
                return False
            pipe.delete(keys.tenant_unactivated(tenant))
            pipe.srem(keys.tenants_unactivated(), tenant)
            return True

        return bool(
            self.redis.transaction(clear, keys.tenant_unactivated(tenant), value_from_callable=True)
        )

    def set_quota(self, tenant: str, used: int, remaining: int, at: datetime) -> None:
        self.redis.hset(
            keys.tenant_quota(tenant),
            mapping={"used": used, "remaining": remaining, "at": to_iso(at) or ""},
        )

    def quota(self, tenant: str) -> dict[str, Any] | None:
        raw = {
            k.decode(): v.decode() for k, v in self.redis.hgetall(keys.tenant_quota(tenant)).items()
        }
        if not raw:
            return None
        return {"used": int(raw["used"]), "remaining": int(raw["remaining"]), "at": raw["at"]}
