"""One SMTP session of the outbox: opened with TLS as configured, its failures described for an
operator without the password, and closed quietly whatever state the server left it in."""

from __future__ import annotations

import smtplib
import socket
import ssl

from threatshare.alerts.message import clean_text
from threatshare.config import Smtp
from threatshare.logs import MASK


class ConnectionLost(Exception):
    """The SMTP session is unusable; the rest of this round would fail the same way."""


def describe(exc: BaseException, smtp: Smtp) -> str:
    """An operator's one-line reason, cleaned of control characters and of the password."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in exc.recipients.values()})
        text = f"all recipients refused ({', '.join(map(str, codes))})"
    elif isinstance(exc, smtplib.SMTPResponseException):
        reply = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else ""
        text = f"{exc.smtp_code} {reply}"
    elif isinstance(exc, TimeoutError | socket.timeout):
        text = f"timed out after {smtp.timeout.total_seconds():g}s"
    else:
        text = f"{type(exc).__name__}: {exc}"
    if smtp.password is not None and (secret := smtp.password.get_secret_value()):
        text = text.replace(secret, MASK)
    return clean_text(text, 300)


def connect(smtp: Smtp) -> smtplib.SMTP:
    """An SMTP session, with TLS as configured (verified; never a fallback to clear text)."""
    timeout = smtp.timeout.total_seconds()
    # gethostname, not smtplib's default getfqdn: no DNS lookup to say EHLO.
    helo = socket.gethostname() or "localhost"
    context = ssl.create_default_context(cafile=smtp.ca_file)
    client: smtplib.SMTP
    if smtp.security == "ssl":
        client = smtplib.SMTP_SSL(
            smtp.host, smtp.resolved_port, local_hostname=helo, timeout=timeout, context=context
        )
    else:
        client = smtplib.SMTP(smtp.host, smtp.resolved_port, local_hostname=helo, timeout=timeout)
    try:
        if smtp.security == "starttls":
            client.starttls(context=context)
        if smtp.username and smtp.password is not None:
            client.login(smtp.username, smtp.password.get_secret_value())
    except BaseException:
        client.close()
        raise
    return client


def quit_session(session: smtplib.SMTP) -> None:
    """End the session politely, or just close it when the server is past that."""
    try:
        session.quit()
    except (smtplib.SMTPException, OSError):
        session.close()
