"""Who hears of an alert (docs/design.md#alerts): e-mail addresses (bare or ``mailto:``) and
incoming-webhook URLs, which carry a token and are treated as secrets.
"""

from __future__ import annotations

import json
import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator

from threatshare.http import url_problem

EMAIL_PATTERN = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")

#: How an alert is laid out for a webhook: chosen by the URL's host, or by a ``#slack``,
#: ``#teams`` or ``#json`` fragment (a fragment never leaves this process).
WEBHOOK_SHAPES = ("slack", "teams", "json")


def is_webhook(recipient: str) -> bool:
    return recipient.lower().startswith(("https://", "http://"))


def _check_recipient(value: str) -> str:
    """An e-mail address (bare or ``mailto:``) or an incoming-webhook URL (docs/design.md#alerts).

    Messages never quote the value: a webhook URL carries its token."""
    if is_webhook(value):
        if problem := url_problem(value):
            raise ValueError(f"webhook URL {problem}")
        fragment = urlsplit(value).fragment
        if fragment and fragment not in WEBHOOK_SHAPES:
            raise ValueError("a webhook URL may end only in #slack, #teams or #json")
        return value
    if value.lower().startswith("mailto:"):
        value = value[len("mailto:") :]
    if not EMAIL_PATTERN.fullmatch(value):
        raise ValueError("is neither an e-mail address (or mailto:) nor an https:// webhook URL")
    return value


#: Where an alert goes: an e-mail address or a webhook URL (a secret, like a password).
Recipient = Annotated[str, AfterValidator(_check_recipient)]


def _recipient_list(value: object) -> object:
    """A list as TOML gives it, or the text of an environment variable or a secret file (where
    webhook URLs belong): a JSON list, or one recipient per line or comma."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError("is not a JSON list of recipients") from None
    return [part.strip() for part in re.split(r"[\n,]", text) if part.strip()]


Recipients = Annotated[list[Recipient], BeforeValidator(_recipient_list)]
