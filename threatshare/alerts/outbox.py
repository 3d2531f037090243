"""The outbox (docs/design.md#alerts): alerts wait in Redis until an SMTP server or a webhook
receiver takes them.

:meth:`Outbox.put` queues an alert once per incident, fleet-wide: a marker key
(``SET NX``, 30 days) and the push happen in one Lua script, so a second worker or a restarted
process that sees the same incident queues nothing. :meth:`Outbox.deliver` sends what is due,
oldest first, and never raises for SMTP trouble: a failed alert stays where it is in the list,
with its attempts and a next-try time (exponential backoff), and a warning is logged.

Several workers may deliver at once. Entries stay in the list, in order, while they are being
sent; a worker sends one only after taking its *sending* key (``SET NX`` with a lease) in the same
Lua call that checks the entry is still queued, and removes the entry before letting the key go.
So an alert is sent once, and one whose sender died is tried again when the lease expires.

An alert is queued as one entry per *channel*: one for its e-mail recipients, one for each of its
webhooks (named by reference, :mod:`threatshare.alerts.channels`), all under the one incident
marker. Each channel is delivered and retried on its own, so Slack being down delays neither the
e-mail nor Teams. Alerts of one instance go out on a channel in the order they were queued (a
"recovered" never overtakes its "halted"). Without ``[smtp]`` an e-mail alert is logged at
warning level and dropped as *logged*.

The outbox is bounded (docs/design.md#alerts): when an alert would make it hold more than
``max_pending``, the oldest alerts that are not halt alerts (recoveries, warnings) are dropped
first, in the same Lua call, and logged. A halt alert is never dropped for room, so while only
halt alerts wait the outbox may pass the bound (there is at most one per halt of an instance and
channel).
"""

from __future__ import annotations

import smtplib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import httpx2 as httpx
import structlog
from redis import Redis

from threatshare import keys
from threatshare.alerts import webhook
from threatshare.alerts.channels import EMAIL, Webhook, webhooks_of
from threatshare.alerts.compose import compose
from threatshare.alerts.entries import CLAIM, PUT, SETTLE, Entry, per_channel
from threatshare.alerts.message import Alert
from threatshare.alerts.smtp import ConnectionLost, connect, describe, quit_session
from threatshare.config import Config, Smtp
from threatshare.errors import redis_errors

log = structlog.get_logger(__name__)

INCIDENT_TTL = timedelta(days=30)
MAX_INCIDENT = 200

#: Most alerts the outbox holds before it drops its oldest non-halt alerts.
MAX_PENDING = 1000


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
        self._put = redis.register_script(PUT)
        self._claim = redis.register_script(CLAIM)
        self._settle = redis.register_script(SETTLE)

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
        entries = [Entry.new(part, now) for part in per_channel(alert)]
        incident = f"{alert.kind}:{incident}"
        marker = (
            keys.tenant_alert_sent(alert.zia_tenant, incident)
            if alert.kind == "quota_warning"  # one per tenant, whichever instance saw it
            else keys.alert_sent(alert.instance, incident)
        )
        with redis_errors("outbox"):
            queued, dropped = self._put(
                keys=[marker, keys.outbox()],
                args=[
                    entries[0].id,
                    int(INCIDENT_TTL.total_seconds()),
                    self._max_pending,
                    *(entry.raw for entry in entries),
                ],
            )
        if dropped:
            log.error("alerts_dropped", reason="outbox full", dropped=int(dropped))
        if queued:
            for entry in entries:
                log.info(
                    "alert_queued",
                    instance=alert.instance,
                    alert=alert.kind,
                    alert_id=entry.id,
                    channel=entry.channel,
                )
        return bool(queued)

    def pending(self) -> int:
        """How many alerts wait in the outbox."""
        with redis_errors("outbox"):
            return int(self._redis.llen(keys.outbox()))

    def deliver_for(self, config: Config, *, limit: int = 100) -> Delivery:
        """:meth:`deliver` with the SMTP server and the webhooks of ``config``."""
        return self.deliver(
            config.smtp, webhooks=webhooks_of(config), secrets=config.secret_values(), limit=limit
        )

    def deliver(
        self,
        smtp: Smtp | None,
        *,
        webhooks: Mapping[str, Webhook] | None = None,
        secrets: Sequence[str] = (),
        limit: int = 100,
    ) -> Delivery:
        """Send the due alerts among the oldest ``limit``: e-mails over one SMTP session, each
        webhook alert in one POST (``webhooks``: the configured ones, by reference; ``secrets``:
        values no webhook body may carry).

        Trouble never raises: SMTP (refused or dropped connection, timeout, TLS or login
        failure, a 4xx/5xx reply), or a receiver down, slow or answering 5xx/429: the alert
        waits for its next try. A channel that failed is not tried again in the same round,
        since its other alerts would meet the same failure; other channels go on."""
        now = self._clock()
        with redis_errors("outbox"):
            # Kept as Redis gave them: they are also the handles for LPOS/LSET/LREM.
            raws: list[str | bytes] = self._redis.lrange(keys.outbox(), 0, max(limit, 1) - 1)
        counts = {"sent": 0, "logged": 0, "failed": 0, "dropped": 0}
        # (instance, channel) with an older alert still queued: keep their order.
        held: set[tuple[str, str]] = set()
        down: set[str] = set()  # channels that failed this round
        session: smtplib.SMTP | None = None
        http: httpx.Client | None = None
        try:
            for raw in raws:
                try:
                    entry = Entry.parse(raw)
                except (ValueError, KeyError, TypeError):
                    self._drop_unreadable(raw)
                    counts["dropped"] += 1
                    continue
                instance, channel = entry.alert.instance, entry.channel
                if (instance, channel) in held or channel in down:
                    continue
                token = uuid.uuid4().hex
                if entry.next_try > now or not self._take(entry, token, smtp):
                    held.add((instance, channel))
                    continue
                if now - entry.queued_at > self._max_age:
                    log.error(
                        "alert_dropped",
                        reason="undelivered for too long",
                        instance=instance,
                        alert=entry.alert.kind,
                        alert_id=entry.id,
                        channel=channel,
                        attempts=entry.attempts,
                        last_error=entry.last_error,
                    )
                    self._finish(entry, token)
                    counts["dropped"] += 1
                    continue
                if channel != EMAIL:
                    if http is None:
                        http = webhook.client()
                    outcome = self._post(http, entry, token, webhooks or {}, secrets, now)
                    counts[outcome] += 1
                    if outcome == "failed":
                        held.add((instance, channel))
                        down.add(channel)
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
                    held.add((instance, channel))
                    cause = exc.__cause__ if isinstance(exc, ConnectionLost) else exc
                    self._retry(entry, token, smtp, cause or exc, now)
                    if isinstance(exc, ConnectionLost):
                        if session is not None:
                            session.close()
                            session = None
                        down.add(EMAIL)
                    continue
                self._finish(entry, token)
                counts["sent"] += 1
        finally:
            if session is not None:
                quit_session(session)
            if http is not None:
                http.close()
        return Delivery(waiting=self.pending(), **counts)

    # -- one alert -------------------------------------------------------------------------

    def _take(self, entry: Entry, token: str, smtp: Smtp | None) -> bool:
        # The lease outlives any honest attempt: connect, TLS, login and DATA each get `timeout`.
        lease = 60 + 6 * (smtp.timeout.total_seconds() if smtp else 30)
        with redis_errors("outbox"):
            return bool(
                self._claim(
                    keys=[keys.outbox(), keys.outbox_sending(entry.id)],
                    args=[entry.raw, token, int(lease)],
                )
            )

    def _finish(self, entry: Entry, token: str) -> None:
        with redis_errors("outbox"):
            self._settle(
                keys=[keys.outbox(), keys.outbox_sending(entry.id)], args=[entry.raw, "", token]
            )

    def _reschedule(self, entry: Entry, token: str, reason: str, now: float) -> tuple[float, int]:
        """Put ``entry`` back for a later try; returns the wait and the attempts so far."""
        wait = min(self._max_wait, self._first_wait * 2**entry.attempts)
        updated = entry.failed(reason, now + wait)
        with redis_errors("outbox"):
            self._settle(
                keys=[keys.outbox(), keys.outbox_sending(entry.id)],
                args=[entry.raw, updated.raw, token],
            )
        return wait, updated.attempts

    def _retry(self, entry: Entry, token: str, smtp: Smtp, exc: BaseException, now: float) -> None:
        reason = describe(exc, smtp)
        wait, attempts = self._reschedule(entry, token, reason, now)
        log.warning(
            "alert_delivery_failed",
            instance=entry.alert.instance,
            alert=entry.alert.kind,
            alert_id=entry.id,
            attempts=attempts,
            retry_in_s=round(wait, 3),
            smtp_host=smtp.host,
            smtp_port=smtp.resolved_port,
            error=reason,
        )

    def _post(
        self,
        http: httpx.Client,
        entry: Entry,
        token: str,
        webhooks: Mapping[str, Webhook],
        secrets: Sequence[str],
        now: float,
    ) -> str:
        """One webhook alert: ``sent``, ``failed`` (it waits for its next try) or ``dropped``
        (the webhook is no longer configured, or its receiver refused the alert for good)."""
        ref = entry.channel
        hook = webhooks.get(ref)
        facts = {"instance": entry.alert.instance, "alert": entry.alert.kind, "alert_id": entry.id}
        if hook is None:
            log.error("alert_dropped", reason="webhook no longer configured", webhook=ref, **facts)
            self._finish(entry, token)
            return "dropped"
        try:
            webhook.post(http, hook, entry.alert, datetime.fromtimestamp(now, UTC), secrets)
        except webhook.WebhookFailed as exc:
            if not exc.retry:
                log.error("alert_dropped", reason=exc.reason, webhook=ref, **facts)
                self._finish(entry, token)
                return "dropped"
            wait, attempts = self._reschedule(entry, token, exc.reason, now)
            log.warning(
                "alert_delivery_failed",
                webhook=ref,
                attempts=attempts,
                retry_in_s=round(wait, 3),
                error=exc.reason,
                **facts,
            )
            return "failed"
        self._finish(entry, token)
        log.info("alert_posted", webhook=ref, shape=hook.shape, **facts)
        return "sent"

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
    def _send(session: smtplib.SMTP, entry: Entry, smtp: Smtp, now: float) -> None:
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
    def _log_instead(entry: Entry, smtp: Smtp | None) -> None:
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
