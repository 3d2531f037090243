"""A real SMTP server on 127.0.0.1 that keeps what it receives: the alert e-mails' sink.

Used by the tests and by ``threatshare demo``. It speaks real SMTP (aiosmtpd in a background
thread), optionally with STARTTLS or implicit TLS and with AUTH, and can emulate an outage by
answering ``451`` to every ``MAIL FROM``. Stopping and starting it again keeps its port and the
mail it already received, so "the server is down, then back" is two calls.

    with SmtpSink() as sink:
        ...send to 127.0.0.1:sink.port...
        assert sink.messages[0].message["Subject"] == "..."
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
# Given explicitly so neither side looks up its own name in DNS.
SERVER_NAME = "sink.threatshare.localhost"


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the sink received it: the envelope and the parsed message."""

    envelope_from: str
    envelope_to: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    #: The login the client authenticated with, if it did.
    login: str | None = None


@dataclass(frozen=True)
class Certificate:
    """A throwaway self-signed certificate for 127.0.0.1 (and ``localhost``)."""

    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def self_signed_certificate(directory: Path) -> Certificate:
    """Write a fresh self-signed certificate and key into ``directory`` with the openssl CLI.

    Clients trust it by using ``cert_file`` as their CA file (``Smtp.ca_file``)."""
    cert, key = directory / "sink-cert.pem", directory / "sink-key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-nodes", "-days", "2",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-keyout", str(key), "-out", str(cert),
            "-subj", f"/CN={HOST}",
            "-addext", f"subjectAltName=IP:{HOST},DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return Certificate(cert_file=cert, key_file=key)


class _Handler:
    """aiosmtpd hooks: refuse on demand, insist on AUTH when asked to, keep every message."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self._sink.refuse:
            return "451 4.3.0 Mail temporarily refused (emulated outage)"
        if self._sink.require_auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        # Parsed with Unix line ends so bodies read back as they were written; ``raw`` keeps
        # the wire form.
        parsed = message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        login = session.auth_data.login.decode() if session.auth_data else None
        self._sink._received(
            ReceivedMail(
                envelope_from=str(envelope.mail_from),
                envelope_to=tuple(envelope.rcpt_tos),
                message=parsed,
                raw=raw,
                login=login,
            )
        )
        return "250 Message accepted"


class _Controller(Controller):
    """A Controller that can bind port 0 and then knows the port the system chose."""

    def _create_server(self) -> Any:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
        )
        self.port = server.sockets[0].getsockname()[1]
        return server


class SmtpSink:
    """A real SMTP server on 127.0.0.1 that records the mail it accepts.

    - ``require_auth=(login, password)``: AUTH PLAIN/LOGIN is offered (also without TLS, so
      ``security = "none"`` can be tested) and ``MAIL FROM`` before a successful login gets 530.
    - ``tls_context``: offer STARTTLS with it; with ``implicit_tls=True`` the whole connection
      is TLS from the first byte instead (``security = "ssl"``).
    - ``refuse = True``: answer 451 to every ``MAIL FROM`` (an outage that still accepts TCP).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        require_auth: tuple[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
    ) -> None:
        if implicit_tls and tls_context is None:
            raise ValueError("implicit_tls needs a tls_context")
        self.require_auth = require_auth
        self.refuse = False
        self._port = port
        self._tls_context = tls_context
        self._implicit_tls = implicit_tls
        self._controller: _Controller | None = None
        self._lock = threading.Lock()
        self._messages: list[ReceivedMail] = []
        #: Logins that failed (wrong login or password); the passwords are not kept.
        self.failed_logins: list[str] = []

    @property
    def port(self) -> int:
        if self._controller is not None:
            return int(self._controller.port)
        if self._port == 0:
            raise RuntimeError("the sink has not been started yet")
        return self._port

    @property
    def running(self) -> bool:
        return self._controller is not None

    @property
    def messages(self) -> list[ReceivedMail]:
        """Everything accepted so far, oldest first (a copy)."""
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def start(self) -> SmtpSink:
        """Listen (again: on the port it had before, so clients find it back)."""
        if self._controller is not None:
            return self
        smtp_options: dict[str, Any] = {
            "server_hostname": SERVER_NAME,
            "auth_require_tls": self._tls_context is not None,
            "authenticator": self._authenticate,
        }
        if self._tls_context is not None and not self._implicit_tls:
            smtp_options["tls_context"] = self._tls_context
        controller = _Controller(
            _Handler(self),
            hostname=HOST,
            port=self._port,
            ssl_context=self._tls_context if self._implicit_tls else None,
            ready_timeout=5.0,
            **smtp_options,
        )
        controller.start()
        self._controller = controller
        self._port = int(controller.port)
        return self

    def stop(self) -> None:
        """Stop listening: clients now get "connection refused". Received mail is kept."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _received(self, mail: ReceivedMail) -> None:
        with self._lock:
            self._messages.append(mail)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.require_auth is None:
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        if (login, password) == self.require_auth:
            return AuthResult(success=True, auth_data=data)
        self.failed_logins.append(login)
        return AuthResult(success=False, handled=False)
