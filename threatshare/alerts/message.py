"""Alerts (docs/design.md#alerts): what an operator reads when an instance halts or recovers
(the lifecycle's two warnings are written in :mod:`threatshare.alerts.warnings`).

The sync engine decides *when* an instance halted or recovered; this module turns that into
an :class:`Alert` and its text, :mod:`threatshare.alerts.compose` into a plain-text
:class:`~email.message.EmailMessage` (:mod:`threatshare.alerts.webhook` into a webhook's JSON),
and :mod:`threatshare.alerts.outbox` delivers it.

Untrusted text (error messages that quote Mimecast or ZIA, indicators) goes only into the
body, with control and format characters removed, its length capped, and anything that looks
like a URL or a host name defanged (``hxxp://``, ``[.]``) so no mail client turns a threat into a
link. Header values are built only from validated names and codes, and checked again before
they are set. An :class:`Alert` carries no secret, so no e-mail can.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from threatshare.alerts.channels import as_recipients, is_webhook_ref
from threatshare.config import (
    CATEGORY_PATTERN,
    EMAIL_PATTERN,
    MIMECAST_RETENTION,
    NAME_PATTERN,
    Config,
)
from threatshare.durations import format_duration
from threatshare.errors import REMEDIES
from threatshare.scrub import clean_text, is_unsafe_char

AlertKind = Literal["halted", "recovered", "quota_warning", "at_capacity"]
KINDS = ("halted", "recovered", "quota_warning", "at_capacity")

MAX_MESSAGE = 1000
MAX_INDICATOR = 300
MAX_INDICATORS = 10
MAX_SHARES = 20
MAX_SHARE_NAME = 120
WIDTH = 76

_CODE = re.compile(r"[^a-z0-9_]")
_SCHEME = re.compile(r"(?i)\bhttp(s?)://")
# A dot between two name characters: the dots of host names, IP addresses and file names, but
# not the full stop that ends a sentence.
_NAME_DOT = re.compile(r"(?<=[\w-])\.(?=[\w-])")


def defang(text: str) -> str:
    """Make URLs and host names in ``text`` unclickable: ``http://`` → ``hxxp://``,
    ``https://`` → ``hxxps://``, and every dot inside a name → ``[.]``. Idempotent."""
    unlinked = _SCHEME.sub(lambda m: f"hxxp{m.group(1).lower()}://", text)
    return _NAME_DOT.sub("[.]", unlinked)


def check_header(value: str) -> str:
    if any(is_unsafe_char(c) for c in value):
        raise ValueError("header value contains a control or format character")
    return value


def utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _unique(addresses: Iterable[str]) -> tuple[str, ...]:
    """Each address once, first occurrence wins; addresses differing only in case are one."""
    seen: set[str] = set()
    out = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            out.append(address)
    return tuple(out)


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else utc(datetime.fromisoformat(value))


@dataclass(frozen=True)
class Alert:
    """A halted or recovered instance, as the e-mail will tell it.

    Names are checked against the configuration's patterns and recipients against its e-mail
    pattern (so none can carry a header break); ``message`` and ``indicators`` are untrusted and
    cleaned here, once, so what is queued is already bounded.
    """

    kind: AlertKind
    instance: str
    category: str
    zia_tenant: str
    mimecast_account: str
    code: str | None
    message: str | None
    since: datetime | None
    bookmark: datetime | None
    recipients: tuple[str, ...]
    indicators: tuple[str, ...] = ()
    #: When the transition happened; the outbox sets it when queued if the caller did not.
    at: datetime | None = field(default=None)
    #: Lifecycle warnings: the figures the body quotes (name -> count or percent).
    figures: dict[str, int] = field(default_factory=dict)
    #: Quota warning: the tenant's categories and their entries, largest first. The names
    #: come from ZIA (an admin typed them): untrusted, cleaned here.
    shares: tuple[tuple[str, int], ...] = ()
    #: Quota warning: when the quota fills at the current rate (None: it is not growing).
    forecast: datetime | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"alert kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        for label in ("instance", "zia_tenant", "mimecast_account"):
            # fullmatch: the patterns end in `$`, which also matches before a final newline.
            if not NAME_PATTERN.fullmatch(getattr(self, label)):
                raise ValueError(f"alert {label} is not a valid name")
        if not CATEGORY_PATTERN.fullmatch(self.category):
            raise ValueError("alert category is not a valid category name")
        for address in self.recipients:
            if not (EMAIL_PATTERN.fullmatch(address) or is_webhook_ref(address)):
                raise ValueError("alert recipient is not an e-mail address or a webhook reference")
        recipients = _unique(self.recipients)
        code = _CODE.sub("_", self.code.lower())[:64] if self.code else None
        message = clean_text(self.message, MAX_MESSAGE) if self.message else None
        cleaned = (clean_text(i, MAX_INDICATOR) for i in self.indicators)
        indicators = tuple(i for i in cleaned if i)[:MAX_INDICATORS]
        shares = tuple(
            (clean_text(str(name), MAX_SHARE_NAME) or "(unnamed)", int(count))
            for name, count in self.shares
        )[:MAX_SHARES]
        figures = {str(k): int(v) for k, v in self.figures.items()}
        for name, value in (
            ("recipients", recipients),
            ("code", code),
            ("message", message),
            ("indicators", indicators),
            ("since", utc(self.since)),
            ("bookmark", utc(self.bookmark)),
            ("at", utc(self.at)),
            ("forecast", utc(self.forecast)),
            ("shares", shares),
            ("figures", figures),
        ):
            object.__setattr__(self, name, value)

    @property
    def subject(self) -> str:
        if self.kind == "recovered":
            return f"[threatshare] {self.instance} recovered"
        if self.kind == "quota_warning":
            percent = self.figures.get("percent", 0)
            return f"[threatshare] ZIA tenant {self.zia_tenant}: custom URL quota {percent}% used"
        if self.kind == "at_capacity":
            return f"[threatshare] {self.instance} at capacity"
        return f"[threatshare] {self.instance} halted: {self.code or 'error'}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (times as ISO 8601 UTC) for the outbox."""
        data = asdict(self)
        for name in ("since", "bookmark", "at", "forecast"):
            moment = data[name]
            data[name] = moment.isoformat() if moment is not None else None
        data["recipients"] = list(self.recipients)
        data["indicators"] = list(self.indicators)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("since", "bookmark", "at", "forecast"):
            values[name] = _parse_time(values.get(name))
        values["recipients"] = tuple(values.get("recipients") or ())
        values["indicators"] = tuple(values.get("indicators") or ())
        values["shares"] = tuple((str(n), int(c)) for n, c in values.get("shares") or ())
        values["figures"] = dict(values.get("figures") or {})
        return cls(**values)


def recipients_for(config: Config, instance: str) -> tuple[str, ...]:
    """Who hears about ``instance``: its ``notify`` list, then ``settings.admins``, each once;
    a webhook by its reference (:mod:`threatshare.alerts.channels`), never its URL."""
    people = [*config.instances[instance].notify, *config.settings.admins]
    return _unique(as_recipients(people))


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def span(length: timedelta) -> str:
    """A duration for people: ``3d 4h``, ``2h 5m``, ``45s``."""
    return format_duration(length, largest=2, sep=" ")


def paragraph(text: str, indent: str = "", *, hanging: str | None = None) -> str:
    # Long names and defanged URLs stay whole: a split indicator would be misread.
    return textwrap.fill(
        text,
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent if hanging is None else hanging,
        break_on_hyphens=False,
        break_long_words=False,
    )


def row(label: str, value: str) -> str:
    return paragraph(f"{label + ':':<18}{value}", hanging=" " * 18)


def facts(alert: Alert) -> list[str]:
    rows = [
        ("Instance", alert.instance),
        ("Category", alert.category),
        ("ZIA tenant", alert.zia_tenant),
        ("Mimecast account", alert.mimecast_account),
    ]
    return [row(label, value) for label, value in rows]


def _bookmark_lines(alert: Alert, now: datetime) -> list[str]:
    days = f"{MIMECAST_RETENTION.days} days"
    keeps = f"Mimecast keeps {days} of logs: records older than {days} before now are gone from it."
    if alert.bookmark is None:
        return [
            row("Bookmark", "none yet (no run has completed)"),
            "",
            paragraph(f"On recovery the first run starts `fetch_from` back from then. {keeps}"),
        ]
    expiry = alert.bookmark + MIMECAST_RETENTION
    lines = [row("Bookmark", when(alert.bookmark)), ""]
    if expiry > now:
        lines.append(
            paragraph(
                "On recovery, the threats Mimecast recorded since the bookmark are shared into "
                f"the category. {keeps} Records from just after this bookmark start to "
                f"disappear at {when(expiry)} (in {span(expiry - now)}); resume before then "
                "to lose none."
            )
        )
    else:
        lines.append(
            paragraph(
                f"{keeps} This bookmark passed that limit at {when(expiry)}: the "
                f"records from {when(alert.bookmark)} to {when(now - MIMECAST_RETENTION)} can no "
                "longer be shared, and more are lost every hour until the instance resumes. "
                f"On recovery, the last {days} are shared."
            )
        )
    return lines


def _indicator_lines(alert: Alert) -> list[str]:
    if not alert.indicators:
        return []
    return ["", "Examples of what it was sharing (defanged):"] + [
        "  " + defang(i) for i in alert.indicators
    ]


def halted_body(alert: Alert, now: datetime) -> str:
    code = alert.code or "error"
    remedy = REMEDIES.get(code, "Read the error message above, fix its cause, then resume.")
    since = alert.since or alert.at or now
    lines = [
        paragraph(
            f"threatshare halted the instance {alert.instance}: it shares nothing with ZIA until "
            "the cause below is fixed and the instance is resumed."
        ),
        "",
        *facts(alert),
        row("Error code", code),
        row("Error", defang(alert.message) if alert.message else "(no message)"),
        row("Halted since", f"{when(since)} ({span(now - since)} ago)"),
        *_bookmark_lines(alert, now),
        *_indicator_lines(alert),
        "",
        "What to fix:",
        paragraph(remedy, "  "),
        "",
        "Then resume it (a change to its configuration resumes it too):",
        f"  threatshare resume {alert.instance}",
    ]
    return "\n".join(lines) + "\n"


def recovered_body(alert: Alert, now: datetime) -> str:
    recovered = alert.at or now
    lines = [
        paragraph(f"The instance {alert.instance} recovered: it shares threats with ZIA again."),
        "",
        *facts(alert),
        row("Recovered at", when(recovered)),
    ]
    if alert.since is not None:
        lines += [
            row("Halted since", when(alert.since)),
            row("Halted for", span(recovered - alert.since)),
        ]
    if alert.code:
        lines.append(row("It had halted on", alert.code))
    if alert.bookmark is not None:
        lines.append(row("Bookmark", when(alert.bookmark)))
    lines += ["", paragraph("Nothing else to do; `threatshare status` shows its counters.")]
    return "\n".join(lines) + "\n"
