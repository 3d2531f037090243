"""The SMTP sink is a real SMTP server on loopback: TLS, AUTH, outages and restarts."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from threatshare.sandbox.smtp import HOST, Certificate, SmtpSink, self_signed_certificate

TIMEOUT = 5.0


def _message(subject: str = "hello") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "threatshare@example.com"
    message["To"] = "soc@example.com"
    message["Subject"] = subject
    message.set_content("body\n")
    return message


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


def _client(port: int) -> smtplib.SMTP:
    return smtplib.SMTP(HOST, port, local_hostname="client", timeout=TIMEOUT)


def _trusting(certificate: Certificate) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certificate.cert_file)


def test_keeps_each_message_with_its_envelope(sink: SmtpSink) -> None:
    """A message sent over SMTP is kept, parsed, with its envelope sender and recipients."""
    with _client(sink.port) as client:
        client.send_message(
            _message(), from_addr="bounce@example.com", to_addrs=["a@example.com", "b@example.com"]
        )
    [mail] = sink.messages
    assert mail.message["Subject"] == "hello"
    assert mail.envelope_from == "bounce@example.com"
    assert mail.envelope_to == ("a@example.com", "b@example.com")
    assert mail.message.get_content() == "body\n"
    assert mail.login is None


def test_refuse_answers_451_and_keeps_nothing(sink: SmtpSink) -> None:
    """With ``refuse`` set, MAIL FROM gets a temporary 451 and no message is stored."""
    sink.refuse = True
    with _client(sink.port) as client, pytest.raises(smtplib.SMTPSenderRefused) as refused:
        client.send_message(_message())
    assert refused.value.smtp_code == 451
    assert sink.messages == []
    sink.refuse = False
    with _client(sink.port) as client:
        client.send_message(_message())
    assert len(sink.messages) == 1


def test_stopped_sink_refuses_connections_and_comes_back_on_its_port() -> None:
    """After stop() connections are refused; start() listens on the same port and keeps mail."""
    sink = SmtpSink().start()
    try:
        port = sink.port
        with _client(port) as client:
            client.send_message(_message("before"))
        sink.stop()
        assert not sink.running
        with pytest.raises(ConnectionRefusedError):
            _client(port)
        sink.start()
        assert sink.port == port
        with _client(port) as client:
            client.send_message(_message("after"))
        assert [m.message["Subject"] for m in sink.messages] == ["before", "after"]
    finally:
        sink.stop()


def test_port_is_unknown_before_the_first_start() -> None:
    """A sink asked for any free port has no port to tell until it starts."""
    with pytest.raises(RuntimeError):
        _ = SmtpSink().port


def test_auth_is_required_and_checked() -> None:
    """With require_auth, mail before login gets 530, a wrong password 535, the right one works."""
    with SmtpSink(require_auth=("alerts", "s3cret-pw")) as sink:
        with _client(sink.port) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.send_message(_message())
            assert refused.value.smtp_code == 530
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("alerts", "wrong")
        with _client(sink.port) as client:
            client.login("alerts", "s3cret-pw")
            client.send_message(_message())
        assert [m.login for m in sink.messages] == ["alerts"]
        # smtplib tries PLAIN, then LOGIN: both failures are recorded, neither password kept.
        assert sink.failed_logins and set(sink.failed_logins) == {"alerts"}


def test_starttls_with_a_verified_self_signed_certificate(certificate: Certificate) -> None:
    """STARTTLS is offered, and a client trusting the throwaway certificate verifies it."""
    with SmtpSink(tls_context=certificate.server_context()) as sink:
        with _client(sink.port) as client:
            client.starttls(context=_trusting(certificate))
            client.send_message(_message("over starttls"))
        assert [m.message["Subject"] for m in sink.messages] == ["over starttls"]


def test_implicit_tls(certificate: Certificate) -> None:
    """With implicit_tls the connection is TLS from the first byte (SMTPS)."""
    context = certificate.server_context()
    with SmtpSink(tls_context=context, implicit_tls=True) as sink:
        with smtplib.SMTP_SSL(
            HOST,
            sink.port,
            local_hostname="client",
            timeout=TIMEOUT,
            context=_trusting(certificate),
        ) as client:
            client.send_message(_message("over ssl"))
        assert [m.message["Subject"] for m in sink.messages] == ["over ssl"]


def test_untrusted_certificate_is_rejected_by_a_verifying_client(certificate: Certificate) -> None:
    """A client with the system's trust store refuses the self-signed certificate."""
    with SmtpSink(tls_context=certificate.server_context()) as sink:
        with _client(sink.port) as client, pytest.raises(ssl.SSLCertVerificationError):
            client.starttls(context=ssl.create_default_context())
        assert sink.messages == []


def test_implicit_tls_needs_a_context() -> None:
    """Asking for implicit TLS without a certificate is a mistake caught at construction."""
    with pytest.raises(ValueError):
        SmtpSink(implicit_tls=True)


def test_certificate_files_are_written(tmp_path: Path) -> None:
    """self_signed_certificate writes a PEM certificate and key into the directory given."""
    certificate = self_signed_certificate(tmp_path)
    assert certificate.cert_file.read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" in certificate.key_file.read_text()
