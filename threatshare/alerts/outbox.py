"""The outbox (docs/design.md#alerts): alert e-mails wait in Redis until an SMTP server takes them.

:meth:`Outbox.put` queues an alert once per incident, fleet-wide: a marker key
(``SET NX``, 30 days) and the push happen in one Lua script, so a second worker or a restarted
process that sees the same incident queues nothing. :meth:`Outbox.deliver` sends what is due,
oldest first, and never raises for SMTP trouble: a failed alert stays where it is in the list,
with its attempts and a next-try time (exponential backoff), and a warning is logged.

Several workers may deliver at once. Entries stay in the list, in order, while they are being
sent; a worker sends one only after taking its *sending* key (``SET NX`` with a lease) in the same
Lua call that checks the entry is still queued, and removes the entry before letting the key go.
So an alert is sent once, and one whose sender died is tried again when the lease expires.
Alerts of one instance go out in the order they were queued (a "recovered" never overtakes its
"halted"). Without ``[smtp]`` an alert is logged at warning level and dropped as *logged*.

The outbox is bounded (docs/design.md#alerts): when an alert would make it hold more than
``max_pending``, the oldest alerts that are not halt alerts (recoveries, warnings) are dropped
first, in the same Lua call, and logged. A halt alert is never dropped for room, so while only halt
alerts wait the outbox may pass the bound (there is at most one per halt of an instance).
"""

from __future__ import annotations

import json
import smtplib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import structlog
from redis import Redis

from threatshare import keys
from threatshare.alerts.compose import compose
from threatshare.alerts.message import Alert
from threatshare.alerts.smtp import ConnectionLost, connect, describe, quit_session
from threatshare.config import Smtp
from threatshare.errors import redis_errors

log = structlog.get_logger(__name__)

INCIDENT_TTL = timedelta(days=30)
MAX_INCIDENT = 200

#: Most alerts the outbox holds before it drops its oldest non-halt alerts.
MAX_PENDING = 1000

# Queue the alert only if its incident marker is new: both or neither, whatever crashes. Then,
# over the bound ARGV[4], drop the oldest alerts that are not halt alerts, never a halted one.
# Returns {queued, dropped}.
_PUT = """
if not redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[3]) then return {0, 0} end
redis.call('RPUSH', KEYS[2], ARGV[1])
local excess = redis.call('LLEN', KEYS[2]) - tonumber(ARGV[4])
local dropped = 0
if excess > 0 then
  for _, raw in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    if dropped >= excess then break end
    local ok, entry = pcall(cjson.decode, raw)
    local kind = ok and type(entry) == 'table' and type(entry.alert) == 'table'
      and entry.alert.kind or nil
    if kind ~= 'halted' then
      dropped = dropped + redis.call('LREM', KEYS[2], 1, raw)
    end
  end
end
return {1, dropped}
"""
# Take an entry for sending only while it is still queued and nobody else is sending it.
_CLAIM = """
if not redis.call('LPOS', KEYS[1], ARGV[1]) then return 0 end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3]) then return 1 end
return 0
"""
# Replace the entry in place (keeps its place in the queue), or remove it when ARGV[2] is
# empty; then let the sending key go if it is still ours.
_SETTLE = """
local pos = redis.call('LPOS', KEYS[1], ARGV[1])
if pos then
  if ARGV[2] == '' then
    redis.call('LREM', KEYS[1], 1, ARGV[1])
  else
    redis.call('LSET', KEYS[1], pos, ARGV[2])
  end
end
if redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
return pos and 1 or 0
"""


@dataclass(frozen=True)
class Delivery:
    """What one :meth:`Outbox.deliver` did."""

    #: Accepted by the SMTP server.
    sent: int
    #: Still in the outbox afterwards (due later, failed now, or beyond ``limit``).
    waiting: int
    #: Logged instead of sent (no ``[smtp]``, or nobody to send to).
    logged: int = 0
    #: Tried and failed this time; they wait for their next try.
    failed: int = 0
    #: Given up: older than ``max_age``, or unreadable.
    dropped: int = 0


@dataclass(frozen=True)
class _Entry:
    """One queued alert with its delivery record, and the exact JSON it is stored as."""

    id: str
    alert: Alert
    queued_at: float
    attempts: int
    next_try: float
    last_error: str | None
    raw: str | bytes

    @classmethod
    def new(cls, alert: Alert, now: float) -> _Entry:
        return cls._build(uuid.uuid4().hex, alert, now, 0, now, None)

    @classmethod
    def _build(
        cls,
        alert_id: str,
        alert: Alert,
        queued: float,
        attempts: int,
        next_try: float,
        error: str | None,
    ) -> _Entry:
        data = {
            "id": alert_id,
            "alert": alert.to_dict(),
            "queued_at": queued,
            "attempts": attempts,
            "next_try": next_try,
            "last_error": error,
        }
        raw = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return cls(alert_id, alert, queued, attempts, next_try, error, raw)

    @classmethod
    def parse(cls, raw: str | bytes) -> _Entry:
        data = json.loads(raw)
        return cls(
            id=str(data["id"]),
            alert=Alert.from_dict(data["alert"]),
            queued_at=float(data["queued_at"]),
            attempts=int(data["attempts"]),
            next_try=float(data["next_try"]),
            last_error=data.get("last_error"),
            raw=raw,
        )

    def failed(self, error: str, next_try: float) -> _Entry:
        return self._build(self.id, self.alert, self.queued_at, self.attempts + 1, next_try, error)


class Outbox:
    """Alert e-mails waiting in Redis, delivered by whichever worker calls :meth:`deliver`.

    ``first_wait`` and ``max_wait`` bound the backoff between tries of one alert (seconds);
    an alert still undelivered after ``max_age`` is dropped with an error in the log.
    ``clock`` gives the time in epoch seconds.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        first_wait: float = 30.0,
        max_wait: float = 3600.0,
        max_age: timedelta = timedelta(days=7),
        max_pending: int = MAX_PENDING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._max_pending = max_pending
        self._first_wait = first_wait
        self._max_wait = max_wait
        self._max_age = max_age.total_seconds()
        self._clock = clock
        self._put = redis.register_script(_PUT)
        self._claim = redis.register_script(_CLAIM)
        self._settle = redis.register_script(_SETTLE)

    def put(self, alert: Alert, incident: str) -> bool:
        """Queue ``alert`` unless this incident already alerted (in any process of the fleet).

        ``incident`` names one halt of the instance (e.g. its ``error_since``); the same name can
        be used for the halted and the recovered alert of that halt, as each kind is counted
        apart. Returns False when the alert was already queued once."""
        if not incident or len(incident) > MAX_INCIDENT or not incident.isprintable():
            raise ValueError("incident must be 1 to 200 printable characters")
        now = self._clock()
        if alert.at is None:
            alert = replace(alert, at=datetime.fromtimestamp(now, UTC))
        entry = _Entry.new(alert, now)
        incident = f"{alert.kind}:{incident}"
        marker = (
            keys.tenant_alert_sent(alert.zia_tenant, incident)
            if alert.kind == "quota_warning"  # one per tenant, whichever instance saw it
            else keys.alert_sent(alert.instance, incident)
        )
        with redis_errors("outbox"):
            queued, dropped = self._put(
                keys=[marker, keys.outbox()],
                args=[entry.raw, entry.id, int(INCIDENT_TTL.total_seconds()), self._max_pending],
            )
        if dropped:
            log.error("alerts_dropped", reason="outbox full", dropped=int(dropped))
        if queued:
            log.info("alert_queued", instance=alert.instance, alert=alert.kind, alert_id=entry.id)
        return bool(queued)

    def pending(self) -> int:
        """How many alerts wait in the outbox."""
        with redis_errors("outbox"):
            return int(self._redis.llen(keys.outbox()))

    def deliver(self, smtp: Smtp | None, *, limit: int = 100) -> Delivery:
        """Send the due alerts among the oldest ``limit``, over one SMTP session.

        SMTP trouble (refused or dropped connection, timeout, TLS or login failure, a 4xx/5xx
        reply) never raises: the alert waits for its next try. A connection-level failure ends
        the round, since every other alert would meet it too."""
        now = self._clock()
        with redis_errors("outbox"):
            # Kept as Redis gave them: they are also the handles for LPOS/LSET/LREM.
            raws: list[str | bytes] = self._redis.lrange(keys.outbox(), 0, max(limit, 1) - 1)
        counts = {"sent": 0, "logged": 0, "failed": 0, "dropped": 0}
        held: set[str] = set()  # instances with an older alert still queued: keep their order
        session: smtplib.SMTP | None = None
        try:
            for raw in raws:
                try:
                    entry = _Entry.parse(raw)
                except (ValueError, KeyError, TypeError):
                    self._drop_unreadable(raw)
                    counts["dropped"] += 1
                    continue
                instance = entry.alert.instance
                if instance in held:
                    continue
                token = uuid.uuid4().hex
                if entry.next_try > now or not self._take(entry, token, smtp):
                    held.add(instance)
                    continue
                if now - entry.queued_at > self._max_age:
                    log.error(
                        "alert_dropped",
                        reason="undelivered for too long",
                        instance=instance,
                        alert=entry.alert.kind,
                        alert_id=entry.id,
                        attempts=entry.attempts,
                        last_error=entry.last_error,
                    )
                    self._finish(entry, token)
                    counts["dropped"] += 1
                    continue
                if smtp is None or not entry.alert.recipients:
                    self._log_instead(entry, smtp)
                    self._finish(entry, token)
                    counts["logged"] += 1
                    continue
                try:
                    if session is None:
                        session = self._open(smtp)
                    self._send(session, entry, smtp, now)
                except (smtplib.SMTPException, OSError, ConnectionLost) as exc:
                    counts["failed"] += 1
                    held.add(instance)
                    cause = exc.__cause__ if isinstance(exc, ConnectionLost) else exc
                    self._retry(entry, token, smtp, cause or exc, now)
                    if isinstance(exc, ConnectionLost):
                        if session is not None:
                            session.close()
                            session = None
                        break
                    continue
                self._finish(entry, token)
                counts["sent"] += 1
        finally:
            if session is not None:
                quit_session(session)
        return Delivery(waiting=self.pending(), **counts)

    # -- one alert -------------------------------------------------------------------------

    def _take(self, entry: _Entry, token: str, smtp: Smtp | None) -> bool:
        # The lease outlives any honest attempt: connect, TLS, login and DATA each get `timeout`.
        lease = 60 + 6 * (smtp.timeout.total_seconds() if smtp else 30)
        with redis_errors("outbox"):
            return bool(
                self._claim(
                    keys=[keys.outbox(), keys.outbox_sending(entry.id)],
                    args=[entry.raw, token, int(lease)],
                )
            )

    def _finish(self, entry: _Entry, token: str) -> None:
        with redis_errors("outbox"):
            self._settle(
                keys=[keys.outbox(), keys.outbox_sending(entry.id)], args=[entry.raw, "", token]
            )

    def _retry(self, entry: _Entry, token: str, smtp: Smtp, exc: BaseException, now: float) -> None:
        wait = min(self._max_wait, self._first_wait * 2**entry.attempts)
        reason = describe(exc, smtp)
        updated = entry.failed(reason, now + wait)
        with redis_errors("outbox"):
            self._settle(
                keys=[keys.outbox(), keys.outbox_sending(entry.id)],
                args=[entry.raw, updated.raw, token],
            )
        log.warning(
            "alert_delivery_failed",
            instance=entry.alert.instance,
            alert=entry.alert.kind,
            alert_id=entry.id,
            attempts=updated.attempts,
            retry_in_s=round(wait, 3),
            smtp_host=smtp.host,
            smtp_port=smtp.resolved_port,
            error=reason,
        )

    def _drop_unreadable(self, raw: str | bytes) -> None:
        with redis_errors("outbox"):
            removed = self._redis.lrem(keys.outbox(), 1, raw)
        if removed:
            log.error("alert_dropped", reason="unreadable outbox entry", size=len(raw))

    @staticmethod
    def _open(smtp: Smtp) -> smtplib.SMTP:
        try:
            return connect(smtp)
        except (smtplib.SMTPException, OSError) as exc:
            raise ConnectionLost() from exc

    @staticmethod
    def _send(session: smtplib.SMTP, entry: _Entry, smtp: Smtp, now: float) -> None:
        message = compose(entry.alert, smtp.sender, now=datetime.fromtimestamp(now, UTC))
        try:
            refused = session.send_message(
                message, from_addr=smtp.sender, to_addrs=list(entry.alert.recipients)
            )
        except smtplib.SMTPServerDisconnected as exc:
            raise ConnectionLost() from exc
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:  # the server is closing the session
                raise ConnectionLost() from exc
            raise  # this message was refused; the session is still good for the next
        except smtplib.SMTPException:
            raise
        except OSError as exc:  # SMTPException is an OSError too: hence the order above
            raise ConnectionLost() from exc
        if refused:
            log.warning(
                "alert_recipients_refused",
                instance=entry.alert.instance,
                alert=entry.alert.kind,
                alert_id=entry.id,
                refused=sorted(refused),
            )

    @staticmethod
    def _log_instead(entry: _Entry, smtp: Smtp | None) -> None:
        log.warning(
            "alert_not_emailed",
            reason="smtp not configured" if smtp is None else "no recipients",
            subject=entry.alert.subject,
            recipients=list(entry.alert.recipients),
            instance=entry.alert.instance,
            alert=entry.alert.kind,
            code=entry.alert.code,
            message=entry.alert.message,
        )
