"""The e-mail of an alert (docs/design.md#alerts): plain text, UTF-8, 7-bit on the wire,
checked headers, the body chosen by the alert's kind."""

from __future__ import annotations

from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from threatshare.alerts.message import (
    Alert,
    check_header,
    halted_body,
    recovered_body,
    utc,
)
from threatshare.alerts.warnings import at_capacity_body, quota_warning_body
from threatshare.config import EMAIL_PATTERN

_BODIES = {
    "halted": halted_body,
    "recovered": recovered_body,
    "quota_warning": quota_warning_body,
    "at_capacity": at_capacity_body,
}


def body_of(alert: Alert, now: datetime) -> str:
    """The plain-text body of ``alert`` as of ``now``: the same words in an e-mail and a chat."""
    return _BODIES[alert.kind](alert, now)


def compose(alert: Alert, sender: str, *, now: datetime | None = None) -> EmailMessage:
    """The e-mail for ``alert`` from ``sender``: plain text, UTF-8, checked headers.

    ``now`` fixes the clock (tests, and the Date header of a delayed delivery)."""
    if not EMAIL_PATTERN.fullmatch(sender):
        raise ValueError("sender is not a valid e-mail address")
    if not alert.recipients:
        raise ValueError("alert has no recipients")
    if not all(EMAIL_PATTERN.fullmatch(r) for r in alert.recipients):
        raise ValueError("an e-mail goes to e-mail addresses only")
    moment = utc(now) or datetime.now(UTC)
    body = body_of(alert, moment)
    # 7-bit on the wire: a non-ASCII body goes quoted-printable, so no server needs 8BITMIME.
    message = EmailMessage(policy=policy.SMTP.clone(cte_type="7bit"))
    headers = {
        "From": sender,
        "To": ", ".join(alert.recipients),
        "Subject": alert.subject,
        "Date": format_datetime(moment),
        "Message-ID": make_msgid("threatshare", domain=sender.rsplit("@", 1)[1]),
        # RFC 3834: no auto-replies (vacation notices) back to the sender.
        "Auto-Submitted": "auto-generated",
    }
    for name, value in headers.items():
        message[name] = check_header(value)
    message.set_content(body, charset="utf-8")
    return message
