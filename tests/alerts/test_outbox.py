"""The outbox: one e-mail per incident fleet-wide, delivery over real SMTP, retries, no secrets."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry
from structlog.testing import capture_logs

from threatshare import keys
from threatshare.alerts.message import Alert
from threatshare.alerts.outbox import Delivery, Outbox
from threatshare.config import Smtp
from threatshare.errors import StoreUnavailable
from threatshare.sandbox.smtp import Certificate, SmtpSink, self_signed_certificate

SENDER = "threatshare@example.com"
PASSWORD = "Pa55-w0rd-never-shown"
START = 1_715_342_400.0  # 2024-05-10 12:00:00 UTC


class Clock:
    """A settable clock, so backoff and ageing need no sleeping."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _alert(instance: str = "impersonation", kind: str = "halted", **changes: Any) -> Alert:
    values: dict[str, Any] = {
        "kind": kind,
        "instance": instance,
        "category": "Mimecast Impersonation Domains",
        "zia_tenant": "prod",
        "mimecast_account": "main",
        "code": "zia_auth",
        "message": "token endpoint answered 401",
        "since": datetime(2024, 5, 10, 9, tzinfo=UTC),
        "bookmark": datetime(2024, 5, 10, 8, tzinfo=UTC),
        "recipients": ("secops@example.com", "soc@example.com"),
    }
    values.update(changes)
    return Alert(**values)


def _smtp(port: int, **changes: Any) -> Smtp:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": SENDER,
        "timeout": "2s",
    }
    values.update(changes)
    return Smtp(**values)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(redis_client: redis.Redis, clock: Clock) -> Outbox:
    return Outbox(redis_client, first_wait=30.0, max_wait=300.0, clock=clock)


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


def _subjects(sink: SmtpSink) -> list[str]:
    return [str(m.message["Subject"]) for m in sink.messages]


def _stored(client: redis.Redis) -> list[bytes]:
    """Every key and every value in the database, as bytes."""
    out: list[bytes] = []
    for key in client.scan_iter(count=1000):
        out.append(key)
        kind = client.type(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"list":
            out.extend(client.lrange(key, 0, -1))
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                out += [field, value]
        elif kind == b"set":
            out.extend(client.smembers(key))
        elif kind == b"zset":
            out.extend(member for member, _ in client.zrange(key, 0, -1, withscores=True))
    return out


class TestOncePerIncident:
    def test_one_email_per_new_incident(self, outbox: Outbox, sink: SmtpSink) -> None:
        """A new incident queues one alert, and delivery sends exactly one e-mail to everyone."""
        assert outbox.put(_alert(), "2024-05-10T09:00:00Z") is True
        assert outbox.pending() == 1
        delivery = outbox.deliver(_smtp(sink.port))
        assert delivery == Delivery(sent=1, waiting=0)
        [mail] = sink.messages
        assert mail.message["Subject"] == "[threatshare] impersonation halted: zia_auth"
        assert mail.envelope_to == ("secops@example.com", "soc@example.com")
        assert mail.envelope_from == SENDER

    def test_same_incident_again_queues_nothing_even_from_another_process(
        self, redis_url: str, outbox: Outbox, sink: SmtpSink
    ) -> None:
        """A second put of the incident, here or from another Outbox/connection, adds nothing."""
        assert outbox.put(_alert(), "incident-1")
        assert not outbox.put(_alert(), "incident-1")
        other = redis.Redis.from_url(redis_url)
        try:
            assert not Outbox(other).put(_alert(message="seen by another worker"), "incident-1")
        finally:
            other.close()
        assert outbox.pending() == 1
        outbox.deliver(_smtp(sink.port))
        assert not outbox.put(_alert(), "incident-1")  # also after it was sent
        assert len(sink.messages) == 1

    def test_incident_marker_expires_after_thirty_days(
        self, redis_client: redis.Redis, outbox: Outbox
    ) -> None:
        """The fleet-wide marker carries a TTL of about 30 days, so Redis does not fill up."""
        outbox.put(_alert(), "incident-1")
        ttl = redis_client.ttl(keys.alert_sent("impersonation", "halted:incident-1"))
        assert timedelta(days=29) < timedelta(seconds=ttl) <= timedelta(days=30)

    def test_halted_and_recovered_of_one_incident_both_go(
        self, outbox: Outbox, sink: SmtpSink
    ) -> None:
        """The halted and the recovered alert of one incident are different alerts."""
        assert outbox.put(_alert(), "incident-1")
        assert outbox.put(_alert(kind="recovered"), "incident-1")
        assert outbox.deliver(_smtp(sink.port)).sent == 2
        assert _subjects(sink) == [
            "[threatshare] impersonation halted: zia_auth",
            "[threatshare] impersonation recovered",
        ]

    @pytest.mark.parametrize("incident", ["", "x" * 201, "a\r\nb"])
    def test_incident_must_be_a_short_printable_name(self, outbox: Outbox, incident: str) -> None:
        """An empty, huge or multi-line incident name is a programming error."""
        with pytest.raises(ValueError):
            outbox.put(_alert(), incident)
        assert outbox.pending() == 0

    def test_queue_time_becomes_the_recovery_time(self, outbox: Outbox, sink: SmtpSink) -> None:
        """A recovery mail sent late still says when the instance recovered (its queue time)."""
        outbox.put(_alert(kind="recovered"), "incident-1")
        outbox._clock = lambda: START + 3600  # type: ignore[method-assign]
        outbox.deliver(_smtp(sink.port))
        body = " ".join(str(sink.messages[0].message.get_content()).split())
        assert "Recovered at: 2024-05-10 12:00:00 UTC" in body
        assert "Halted for: 3h" in body


class TestSmtpDown:
    def test_stopped_server_keeps_the_alert_then_sends_it_once(
        self, outbox: Outbox, clock: Clock, redis_client: redis.Redis
    ) -> None:
        """With the server down the alert waits with a backoff; back up, it is sent exactly once."""
        sink = SmtpSink().start()
        smtp = _smtp(sink.port)
        sink.stop()
        try:
            outbox.put(_alert(), "incident-1")
            with capture_logs() as logs:
                delivery = outbox.deliver(smtp)
            assert delivery == Delivery(sent=0, waiting=1, failed=1)
            [warning] = [e for e in logs if e["event"] == "alert_delivery_failed"]
            assert warning["log_level"] == "warning"
            assert warning["attempts"] == 1
            assert "ConnectionRefusedError" in warning["error"]
            [raw] = redis_client.lrange(keys.outbox(), 0, -1)
            entry = json.loads(raw)
            assert entry["attempts"] == 1
            assert entry["next_try"] == START + 30

            sink.start()
            assert outbox.deliver(smtp) == Delivery(sent=0, waiting=1)  # not due yet
            clock.now += 31
            assert outbox.deliver(smtp) == Delivery(sent=1, waiting=0)
            assert outbox.deliver(smtp) == Delivery(sent=0, waiting=0)
            assert len(sink.messages) == 1
        finally:
            sink.stop()

    def test_refusing_server_keeps_the_alert_with_growing_backoff(
        self, outbox: Outbox, clock: Clock, sink: SmtpSink, redis_client: redis.Redis
    ) -> None:
        """451 replies keep the alert; each failure doubles the wait; once accepted it is sent."""
        sink.refuse = True
        outbox.put(_alert(), "incident-1")
        waits = []
        for _ in range(3):
            assert outbox.deliver(_smtp(sink.port)).failed == 1
            entry = json.loads(redis_client.lindex(keys.outbox(), 0) or b"{}")
            waits.append(entry["next_try"] - clock.now)
            assert entry["last_error"].startswith("451 ")
            clock.now = entry["next_try"]
        assert waits == [30, 60, 120]
        sink.refuse = False
        assert outbox.deliver(_smtp(sink.port)).sent == 1
        assert len(sink.messages) == 1
        assert outbox.pending() == 0

    def test_backoff_is_capped(self, outbox: Outbox, clock: Clock, sink: SmtpSink) -> None:
        """The wait between tries never exceeds max_wait."""
        sink.refuse = True
        outbox.put(_alert(), "incident-1")
        for _ in range(8):
            outbox.deliver(_smtp(sink.port))
            clock.now += 1000
        with capture_logs() as logs:
            outbox.deliver(_smtp(sink.port))
        [warning] = [e for e in logs if e["event"] == "alert_delivery_failed"]
        assert warning["retry_in_s"] == 300

    def test_silent_server_times_out(self, outbox: Outbox) -> None:
        """A server that accepts TCP but never answers costs one timeout, and the alert waits."""
        listener = socket.create_server(("127.0.0.1", 0))
        try:
            port = listener.getsockname()[1]
            outbox.put(_alert(), "incident-1")
            started = time.monotonic()
            with capture_logs() as logs:
                delivery = outbox.deliver(_smtp(port, timeout="300ms"))
            assert time.monotonic() - started < 3
            assert delivery.failed == 1 and delivery.waiting == 1
            [warning] = [e for e in logs if e["event"] == "alert_delivery_failed"]
            assert "timed out" in warning["error"]
        finally:
            listener.close()

    def test_connection_failure_ends_the_round(self, outbox: Outbox) -> None:
        """When the server cannot be reached, one attempt is made, not one per alert."""
        sink = SmtpSink().start()
        smtp = _smtp(sink.port)
        sink.stop()
        for number in range(5):
            outbox.put(_alert(instance=f"i{number}"), "incident-1")
        delivery = outbox.deliver(smtp)
        assert delivery == Delivery(sent=0, waiting=5, failed=1)

    def test_later_alert_of_an_instance_waits_for_the_earlier(
        self, outbox: Outbox, clock: Clock, sink: SmtpSink
    ) -> None:
        """A recovery never overtakes its halt, while other instances' alerts still go out."""
        sink.refuse = True
        outbox.put(_alert(), "incident-1")
        outbox.deliver(_smtp(sink.port))
        sink.refuse = False
        outbox.put(_alert(kind="recovered"), "incident-1")
        outbox.put(_alert(instance="urls"), "incident-9")
        assert outbox.deliver(_smtp(sink.port)) == Delivery(sent=1, waiting=2)
        assert _subjects(sink) == ["[threatshare] urls halted: zia_auth"]
        clock.now += 31
        assert outbox.deliver(_smtp(sink.port)).sent == 2
        assert _subjects(sink)[1:] == [
            "[threatshare] impersonation halted: zia_auth",
            "[threatshare] impersonation recovered",
        ]

    def test_alert_older_than_max_age_is_dropped_with_an_error(
        self, outbox: Outbox, clock: Clock, sink: SmtpSink
    ) -> None:
        """An alert undeliverable for a week is given up, loudly, instead of waiting forever."""
        sink.refuse = True
        outbox.put(_alert(), "incident-1")
        outbox.deliver(_smtp(sink.port))
        clock.now += timedelta(days=8).total_seconds()
        with capture_logs() as logs:
            delivery = outbox.deliver(_smtp(sink.port))
        assert delivery == Delivery(sent=0, waiting=0, dropped=1)
        assert [e["log_level"] for e in logs if e["event"] == "alert_dropped"] == ["error"]


class TestFleet:
    def test_concurrent_deliverers_send_each_alert_once(
        self, redis_url: str, outbox: Outbox, sink: SmtpSink, clock: Clock
    ) -> None:
        """Four workers delivering at once send every alert exactly once."""
        for number in range(24):
            outbox.put(_alert(instance=f"i{number}"), "incident-1")
        smtp = _smtp(sink.port)
        errors: list[BaseException] = []
        barrier = threading.Barrier(4, timeout=5)

        def worker() -> None:
            client = redis.Redis.from_url(redis_url)
            try:
                barrier.wait()
                for _ in range(10):
                    if Outbox(client, clock=clock).deliver(smtp, limit=6).waiting == 0:
                        break
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                client.close()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        assert not errors
        assert outbox.pending() == 0
        subjects = _subjects(sink)
        assert len(subjects) == 24
        assert len(set(subjects)) == 24

    def test_alert_held_by_another_sender_is_left_alone_until_its_lease_ends(
        self, outbox: Outbox, redis_client: redis.Redis, sink: SmtpSink
    ) -> None:
        """An alert another worker is sending is skipped; if that worker died, it goes later."""
        outbox.put(_alert(), "incident-1")
        entry = json.loads(redis_client.lindex(keys.outbox(), 0) or b"{}")
        redis_client.set(keys.outbox_sending(entry["id"]), "other-worker", px=300)
        assert outbox.deliver(_smtp(sink.port)) == Delivery(sent=0, waiting=1)
        deadline = time.monotonic() + 3
        while redis_client.exists(keys.outbox_sending(entry["id"])) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outbox.deliver(_smtp(sink.port)) == Delivery(sent=1, waiting=0)
        assert len(sink.messages) == 1

    def test_limit_bounds_one_round(self, outbox: Outbox, sink: SmtpSink) -> None:
        """deliver(limit=n) sends at most n, oldest first."""
        for number in range(5):
            outbox.put(_alert(instance=f"i{number}"), "incident-1")
        assert outbox.deliver(_smtp(sink.port), limit=2) == Delivery(sent=2, waiting=3)
        assert _subjects(sink) == [
            "[threatshare] i0 halted: zia_auth",
            "[threatshare] i1 halted: zia_auth",
        ]

    def test_unreadable_entry_is_dropped(
        self, outbox: Outbox, redis_client: redis.Redis, sink: SmtpSink
    ) -> None:
        """A corrupt outbox entry is removed with an error instead of blocking the queue."""
        redis_client.rpush(keys.outbox(), b"{not json", b"\xff\xfe not utf-8")
        outbox.put(_alert(), "incident-1")
        with capture_logs() as logs:
            delivery = outbox.deliver(_smtp(sink.port))
        assert delivery == Delivery(sent=1, waiting=0, dropped=2)
        assert [e["event"] for e in logs].count("alert_dropped") == 2

    def test_redis_down_is_a_temporary_store_error(self) -> None:
        """Without Redis the outbox raises StoreUnavailable, the store's temporary error."""
        with socket.create_server(("127.0.0.1", 0)) as placeholder:
            port = placeholder.getsockname()[1]
        client = redis.Redis(
            port=port, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), retries=0)
        )
        try:
            with pytest.raises(StoreUnavailable):
                Outbox(client).put(_alert(), "incident-1")
        finally:
            client.close()


class TestWithoutSmtp:
    def test_alert_is_logged_and_dropped(self, outbox: Outbox) -> None:
        """Without [smtp], the subject and recipients are logged as a warning, then dropped."""
        outbox.put(_alert(), "incident-1")
        with capture_logs() as logs:
            delivery = outbox.deliver(None)
        assert delivery == Delivery(sent=0, waiting=0, logged=1)
        [event] = [e for e in logs if e["event"] == "alert_not_emailed"]
        assert event["log_level"] == "warning"
        assert event["subject"] == "[threatshare] impersonation halted: zia_auth"
        assert event["recipients"] == ["secops@example.com", "soc@example.com"]

    def test_alert_without_recipients_is_logged(self, outbox: Outbox, sink: SmtpSink) -> None:
        """An alert with nobody to send to is logged instead of sent."""
        outbox.put(_alert(recipients=()), "incident-1")
        assert outbox.deliver(_smtp(sink.port)) == Delivery(sent=0, waiting=0, logged=1)
        assert sink.messages == []


class TestLoginAndTls:
    def test_login_works_and_the_password_is_never_logged_or_stored(
        self,
        outbox: Outbox,
        clock: Clock,
        redis_client: redis.Redis,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A wrong password fails without leaking it; the right one delivers; neither is kept."""
        caplog.set_level(logging.DEBUG)
        with SmtpSink(require_auth=("alerts", PASSWORD)) as sink:
            outbox.put(_alert(), "incident-1")
            wrong = _smtp(sink.port, username="alerts", password=PASSWORD + "-old")
            with capture_logs() as logs:
                assert outbox.deliver(wrong).failed == 1
            assert "535" in next(e for e in logs if e["event"] == "alert_delivery_failed")["error"]
            clock.now += 31
            right = _smtp(sink.port, username="alerts", password=PASSWORD)
            with capture_logs() as more_logs:
                assert outbox.deliver(right).sent == 1
            assert [m.login for m in sink.messages] == ["alerts"]
        text = repr(logs) + repr(more_logs) + caplog.text
        assert PASSWORD not in text
        assert PASSWORD.encode() not in b"".join(_stored(redis_client))
        assert PASSWORD not in sink.messages[0].raw.decode()

    @pytest.mark.parametrize("security", ["starttls", "ssl", "none"])
    def test_each_security_mode_delivers(
        self, outbox: Outbox, certificate: Certificate, security: str
    ) -> None:
        """starttls, ssl and none each deliver, TLS verified against the configured CA file."""
        context = certificate.server_context() if security != "none" else None
        with SmtpSink(tls_context=context, implicit_tls=security == "ssl") as sink:
            outbox.put(_alert(), "incident-1")
            smtp = _smtp(sink.port, security=security, ca_file=certificate.cert_file)
            assert outbox.deliver(smtp) == Delivery(sent=1, waiting=0)
            assert len(sink.messages) == 1

    @pytest.mark.parametrize("security", ["starttls", "ssl"])
    def test_certificate_is_verified(
        self, outbox: Outbox, certificate: Certificate, security: str
    ) -> None:
        """Without the private CA, the self-signed certificate is refused and nothing is sent."""
        context = certificate.server_context()
        with SmtpSink(tls_context=context, implicit_tls=security == "ssl") as sink:
            outbox.put(_alert(), "incident-1")
            with capture_logs() as logs:
                delivery = outbox.deliver(_smtp(sink.port, security=security))
            assert delivery == Delivery(sent=0, waiting=1, failed=1)
            assert sink.messages == []
            [warning] = [e for e in logs if e["event"] == "alert_delivery_failed"]
            assert "CERTIFICATE_VERIFY_FAILED" in warning["error"]

    def test_starttls_missing_is_not_a_reason_to_send_in_clear(self, outbox: Outbox) -> None:
        """A server that offers no STARTTLS gets nothing when starttls is configured."""
        with SmtpSink() as sink:
            outbox.put(_alert(), "incident-1")
            assert outbox.deliver(_smtp(sink.port, security="starttls")).failed == 1
            assert sink.messages == []


class TestSmtpSettings:
    def test_clear_text_login_to_a_remote_server_is_refused(self) -> None:
        """security = none with a password is only allowed to a loopback relay."""
        with pytest.raises(ValidationError) as error:
            _smtp(25, host="smtp.example.com", username="u", password=PASSWORD)
        [problem] = error.value.errors(include_url=False, include_input=False)
        assert "in clear" in problem["msg"]
        assert PASSWORD not in repr(problem)
        assert _smtp(25, username="u", password=PASSWORD).password is not None

    def test_ca_file_must_exist(self, tmp_path: Path) -> None:
        """A ca_file that is not there is a configuration error, not a runtime surprise."""
        with pytest.raises(ValidationError):
            _smtp(25, ca_file=tmp_path / "missing.pem")

    def test_host_and_sender_cannot_carry_a_line_break(self) -> None:
        """The host is a name or an address, and the sender one plain address, nothing else."""
        with pytest.raises(ValidationError):
            _smtp(25, host="smtp.example.com\r\nRCPT TO:<x@evil.example>")
        with pytest.raises(ValidationError):
            _smtp(25, sender="threatshare@example.com\n")


def _queued(client: redis.Redis) -> list[bytes]:
    return client.lrange(keys.outbox(), 0, -1)


class TestBound:
    def test_a_full_outbox_drops_its_oldest_non_halt_alerts_never_a_halt(
        self, redis_client: redis.Redis, clock: Clock
    ) -> None:
        """Over the bound, the oldest recovery alerts go first; every halt alert stays, and the
        outbox holds no more than the bound while there is something else to drop."""
        box = Outbox(redis_client, max_pending=4, clock=clock)
        assert box.put(_alert("first-halt", "halted"), "i")
        for n in range(3):
            assert box.put(_alert(f"rec{n}", "recovered"), "i")
        assert box.pending() == 4
        assert box.put(_alert("second-halt", "halted"), "i")
        assert box.put(_alert("rec3", "recovered"), "i")
        kinds = [
            (e["alert"]["instance"], e["alert"]["kind"])
            for e in map(json.loads, _queued(redis_client))
        ]
        assert box.pending() == 4
        assert ("first-halt", "halted") in kinds and ("second-halt", "halted") in kinds
        assert [i for i, k in kinds if k == "recovered"] == ["rec2", "rec3"]

    def test_halt_alerts_are_kept_even_past_the_bound(
        self, redis_client: redis.Redis, clock: Clock
    ) -> None:
        """With only halt alerts waiting, a new halt alert is still queued, and a new recovery
        alert is the one dropped."""
        box = Outbox(redis_client, max_pending=2, clock=clock)
        for n in range(3):
            assert box.put(_alert(f"halt{n}", "halted"), "i")
        assert box.pending() == 3
        box.put(_alert("late", "recovered"), "i")
        kinds = {e["alert"]["kind"] for e in map(json.loads, _queued(redis_client))}
        assert kinds == {"halted"} and box.pending() == 3


def test_a_quota_warning_is_one_per_tenant_whichever_instance_saw_it(
    redis_client: redis.Redis,
) -> None:
    """Two instances of one tenant queueing the warning of the same crossing queue one."""
    outbox = Outbox(redis_client)
    first = _alert("urls", kind="quota_warning", figures={"percent": 81})
    second = _alert("domains", kind="quota_warning", figures={"percent": 81})
    assert outbox.put(first, "crossing-1") is True
    assert outbox.put(second, "crossing-1") is False
    assert outbox.put(second, "crossing-2") is True
    assert outbox.pending() == 2
