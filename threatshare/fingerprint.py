"""The fingerprint of an instance's configuration (docs/design.md#state-in-redis): a change of it
resumes a halted instance, as "edit and Save" does in the reference product.

It is stored in Redis, so it must not let whoever reads Redis test guesses of a secret
offline. It is an HMAC-SHA256 of the instance's non-secret settings and tables, keyed by a key
stretched (PBKDF2) from *all* the secrets of the instance's Mimecast account and ZIA tenant
together, salted with the instance's own identity (name, Mimecast client id, ZIA tenant):

- no value in it depends on one secret alone, so a weak secret (a legacy ZIA admin password)
  cannot be tested without also knowing the others, among them the client secret Mimecast
  issued, which is long and random;
- the salt differs per deployment, so nothing can be precomputed across deployments;
- every process that runs the instance derives the same key from the configuration it was
  given, so the fingerprint agrees across a fleet with no shared state.

A random key kept in ``state_dir`` would hide more (no secret material at all), but each
machine of a fleet has its own ``state_dir``: fingerprints would differ from worker to worker
and every run would look like a configuration change. A key of its own for the fleet would be
one more secret to deploy and rotate, for little over keying by the secrets the instance
already holds.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, SecretStr

from threatshare.config import Config
from threatshare.indicators.rules import rules_digest

#: PBKDF2 rounds of the key: makes every guess costly; a process stretches each key once.
KEY_ROUNDS = 50_000
_HIDDEN = "<secret>"


def _plain(value: Any, secrets: list[str]) -> Any:
    """``value`` as JSON-able data with each secret replaced by a marker (collected apart)."""
    if isinstance(value, SecretStr):
        secrets.append(value.get_secret_value())
        return _HIDDEN
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k), secrets) for k in type(value).model_fields}
    if isinstance(value, dict):
        return {k: _plain(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, secrets) for v in value]
    if isinstance(value, timedelta):
        return value.total_seconds()
    return value if isinstance(value, str | int | float | bool | None) else str(value)


def fingerprint(config: Config, instance: str) -> str:
    """Keyed hash of an instance's settings and of the Mimecast and ZIA tables it uses
    (docs/design.md#state-in-redis): new credentials count as a change, like "edit and Save" in the
    reference product. The rules of what is never blocked count too (the shipped data, the suffix
    list and the settings lists, docs/design.md#what-is-never-blocked): a change of them is what
    makes the next run withdraw what those rules would no longer push."""
    inst = config.instances[instance]
    account, tenant = config.mimecast[inst.mimecast], config.zia[inst.zia]
    secrets: list[str] = []
    settings = {
        "instance": _plain(inst, secrets),
        "mimecast": _plain(account, secrets),
        "zia": _plain(tenant, secrets),
        "rules": rules_digest(config, instance),
    }
    blob = json.dumps(settings, sort_keys=True).encode()
    # Length-prefixed, so two secret lists cannot run together into the same key material.
    material = b"".join(len(s).to_bytes(4, "big") + s.encode() for s in secrets)
    salt = json.dumps([instance, account.client_id, tenant.api_host_id]).encode()
    return hmac.new(_stretched(material, salt), blob, hashlib.sha256).hexdigest()[:32]


@functools.lru_cache(maxsize=1024)
def _stretched(material: bytes, salt: bytes) -> bytes:
    """The PBKDF2 key, once per process and set of secrets: every run computes the fingerprint,
    and 50,000 rounds (about 16 ms of CPU) per run would be a third of a quiet run's cost."""
    return hashlib.pbkdf2_hmac("sha256", material, b"threatshare-fingerprint:" + salt, KEY_ROUNDS)
