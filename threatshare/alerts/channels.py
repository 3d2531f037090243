"""Where an alert goes: e-mail addresses, and webhooks known only by a reference.

A webhook URL carries its token (Slack, Teams and most on-call tools authenticate by the URL
alone), so it is a secret like a password: an :class:`~threatshare.alerts.message.Alert` — and so
the outbox in Redis, the logs and ``status`` — names a webhook by :func:`webhook_ref`, a short
hash of its URL, and the delivering process finds the URL again in its own configuration
(:func:`webhooks_of`). A webhook removed from the configuration while its alert waited cannot be
resolved; that alert is dropped with an error in the log.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from threatshare.config import Config
from threatshare.config.recipients import WEBHOOK_SHAPES, is_webhook

Shape = Literal["slack", "teams", "json"]

WEBHOOK_REF = re.compile(r"^webhook:[0-9a-f]{16}$")
#: The channel key of every e-mail recipient: one SMTP session carries them all.
EMAIL = "email"

# Hosts of the vendors' incoming webhooks. Teams: Office 365 connectors (webhook.office.com,
# outlook.office.com) and Workflows (Power Automate on logic.azure.com / powerplatform.com).
_SLACK_HOSTS = ("hooks.slack.com",)
_TEAMS_HOSTS = (
    "webhook.office.com",
    "outlook.office.com",
    "logic.azure.com",
    "powerplatform.com",
)


def webhook_ref(url: str) -> str:
    """The name a webhook goes by outside the configuration: ``webhook:`` and 16 hex digits
    of the SHA-256 of its URL (the URL's token is long and random: the hash does not reveal
    it)."""
    return "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16]


def is_webhook_ref(recipient: str) -> bool:
    return bool(WEBHOOK_REF.fullmatch(recipient))


def channel_of(recipient: str) -> str:
    """The delivery channel of a recipient: the webhook's reference, or :data:`EMAIL`."""
    return recipient if is_webhook_ref(recipient) else EMAIL


def _under(host: str, domains: Iterable[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


def webhook_shape(url: str) -> Shape:
    """How ``url`` wants an alert laid out: its ``#slack``/``#teams``/``#json`` fragment, else
    by its host (Slack's and Microsoft's webhook hosts), else generic JSON."""
    parts = urlsplit(url)
    if parts.fragment in WEBHOOK_SHAPES:
        return parts.fragment  # type: ignore[return-value]
    host = (parts.hostname or "").lower()
    if _under(host, _SLACK_HOSTS):
        return "slack"
    if _under(host, _TEAMS_HOSTS):
        return "teams"
    return "json"


@dataclass(frozen=True)
class Webhook:
    """One configured webhook: its URL (never printed: ``repr`` shows the reference only)."""

    ref: str
    shape: Shape
    url: str = field(repr=False)

    @property
    def target(self) -> str:
        """The URL to POST to (without the fragment that chose the shape)."""
        return self.url.split("#", 1)[0]


def webhooks_of(config: Config) -> dict[str, Webhook]:
    """Every webhook of the configuration, by reference."""
    return {
        webhook_ref(url): Webhook(webhook_ref(url), webhook_shape(url), url)
        for url in config.webhook_urls()
    }


def as_recipients(addresses: Iterable[str]) -> list[str]:
    """Configured recipients as an alert holds them: e-mail addresses as they are, webhook URLs
    replaced by their reference."""
    return [webhook_ref(a) if is_webhook(a) else a for a in addresses]
