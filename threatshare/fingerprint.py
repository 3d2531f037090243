"""The fingerprint of an instance's configuration (S5): a change of it resumes a halted
instance, as "edit and Save" does in the reference product."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, SecretStr

from threatshare.config import Config


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        # A slow, salted hash: a change of secret changes the fingerprint, while the stored
        # fingerprint does not let anyone test guesses of the secret cheaply.
        return hashlib.pbkdf2_hmac(
            "sha256", value.get_secret_value().encode(), b"threatshare-fingerprint", 20_000
        ).hex()
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k)) for k in type(value).model_fields}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value if isinstance(value, str | int | float | bool | None) else str(value)


def fingerprint(config: Config, instance: str) -> str:
    """Hash of an instance's settings and of the Mimecast and ZIA tables it uses (S5): new
    credentials count as a change, like "edit and Save" in the reference product."""
    inst = config.instances[instance]
    blob = json.dumps(
        {
            "instance": _plain(inst),
            "mimecast": _plain(config.mimecast[inst.mimecast]),
            "zia": _plain(config.zia[inst.zia]),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]
