"""An alert as a webhook's JSON, and one POST of it (docs/design.md#alerts).

Three shapes: Slack's incoming webhook (``text`` in Slack's markup, the body in a code block),
Microsoft Teams (an Adaptive Card in a ``message``, as Workflows and the older connectors take
it) and a generic JSON document with the alert's fields, for on-call tools and relays. Each
carries the same words as the e-mail (:func:`~threatshare.alerts.compose.body_of`): untrusted
text was cleaned and capped when the :class:`~threatshare.alerts.message.Alert` was made, and
indicators are defanged. Before anything is sent every configured secret value (the webhook URLs
among them) is replaced, so a message that quotes one cannot carry it to a chat room.

A POST either lands (2xx) or raises :class:`WebhookFailed`, which says whether trying again can
help (the receiver is down, slow, or asked us to wait) and describes the failure without the URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx2 as httpx

from threatshare.alerts.channels import Shape, Webhook
from threatshare.alerts.compose import body_of
from threatshare.alerts.message import Alert, defang
from threatshare.errors import REMEDIES
from threatshare.http import make_client
from threatshare.scrub import MASK, Scrubber

#: A chat receiver answers in well under a second; a slow one must not hold the round.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
#: Most lines of a Teams card (one text block per line) and characters of a body.
MAX_LINES = 120
MAX_BODY = 8000
#: Answers that mean "later": the receiver is busy, rate-limiting or not there yet.
_RETRYABLE = {408, 425, 429}


class WebhookFailed(Exception):
    """The receiver did not take the alert; ``retry`` when a later try can succeed."""

    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


def client() -> httpx.Client:
    """The HTTP client of one delivery round (TLS verified, answers capped, no redirects)."""
    return make_client(timeout=TIMEOUT)


def _scrubbed(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {k: _scrubbed(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v, secrets) for v in value]
    return value


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _slack_escape(text: str) -> str:
    # Slack's markup: &, < and > are its control characters (<!channel>, <url|label>).
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(alert: Alert, body: str) -> dict[str, Any]:
    fenced = body.replace("```", "'''")  # the body stays inside its code block
    text = f"*{_slack_escape(alert.subject)}*\n```\n{_slack_escape(fenced)}\n```"
    return {"text": text, "unfurl_links": False, "unfurl_media": False}


def _teams(alert: Alert, body: str) -> dict[str, Any]:
    lines = body.splitlines()[:MAX_LINES]
    blocks: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": alert.subject, "weight": "Bolder", "wrap": True}
    ]
    blocks += [
        {
            "type": "TextBlock",
            "text": line or " ",
            "wrap": True,
            "spacing": "None",
            "fontType": "Monospace",
        }
        for line in lines
    ]
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": blocks,
    }
    return {
        "type": "message",
        "summary": alert.subject,
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "content": card}
        ],
    }


def _generic(alert: Alert, body: str) -> dict[str, Any]:
    code = alert.code
    return {
        "source": "threatshare",
        "kind": alert.kind,
        "subject": alert.subject,
        "instance": alert.instance,
        "category": alert.category,
        "zia_tenant": alert.zia_tenant,
        "mimecast_account": alert.mimecast_account,
        "code": code,
        "message": defang(alert.message) if alert.message else None,
        "remedy": REMEDIES.get(code) if code and alert.kind == "halted" else None,
        "resume": f"threatshare resume {alert.instance}" if alert.kind == "halted" else None,
        "since": _iso(alert.since),
        "bookmark": _iso(alert.bookmark),
        "at": _iso(alert.at),
        "forecast": _iso(alert.forecast),
        "indicators": [defang(i) for i in alert.indicators],
        "figures": dict(alert.figures),
        "shares": [{"category": name, "entries": count} for name, count in alert.shares],
        "text": body,
    }


_SHAPES = {"slack": _slack, "teams": _teams, "json": _generic}


def payload(alert: Alert, shape: Shape, now: datetime, secrets: Sequence[str] = ()) -> Any:
    """The JSON document ``alert`` is posted as, for a webhook of ``shape``.

    Secrets are removed from the untrusted text before it is defanged (which changes its dots)
    and from the document after (whatever else quoted one)."""
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    alert = replace(
        alert,
        message=_scrubbed(alert.message, ordered),
        indicators=tuple(_scrubbed(list(alert.indicators), ordered)),
    )
    body = body_of(alert, now)
    if len(body) > MAX_BODY:
        body = body[: MAX_BODY - 1] + "…"
    return _scrubbed(_SHAPES[shape](alert, body), ordered)


def post(
    http: httpx.Client,
    webhook: Webhook,
    alert: Alert,
    now: datetime,
    secrets: Sequence[str] = (),
) -> None:
    """POST ``alert`` to ``webhook``; :class:`WebhookFailed` unless the receiver took it."""
    document = payload(alert, webhook.shape, now, [*secrets, webhook.url, webhook.target])
    try:
        response = http.post(webhook.target, json=document)
    except httpx.TimeoutException as exc:
        raise WebhookFailed(f"timed out ({type(exc).__name__})", retry=True) from None
    except httpx.HTTPError as exc:  # refused, reset, TLS, an answer over the size cap…
        raise WebhookFailed(f"no answer ({type(exc).__name__})", retry=True) from None
    if 200 <= response.status_code < 300:
        return
    scrub = Scrubber([*secrets, webhook.url, webhook.target])
    said = scrub(response.text, 120) if response.text else ""
    reason = f"the receiver answered {response.status_code}" + (f": {said}" if said else "")
    retry = response.status_code >= 500 or response.status_code in _RETRYABLE
    raise WebhookFailed(reason, retry=retry)
