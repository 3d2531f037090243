"""Why is this blocked? (docs/design.md#provenance-and-audit)

:func:`explain` takes what a user tried to open (a URL or a host), shapes it as an entry the way
every Mimecast record is shaped, and looks up, in every configured instance's ledger, the
entries that block it under ZIA's matching (:mod:`threatshare.indicators.matching`): a handful
of look-ups by name, whatever the size of the categories. Each match comes with its provenance,
when it expires (or why it never will), whether ZIA enforces it right now, and the exact
``threatshare unblock`` command that lifts it. It also says which rules would keep the input
from being pushed in future: the instance's ``allow`` list, the protected hosts, the public
suffixes, the runtime allow list.

"Active right now" is one read per ZIA tenant (``GET /status``): with nothing pending, every
entry of the category is enforced; with changes pending, an entry pushed after the tenant's last
activation is staged, not yet enforced.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
import structlog

from threatshare.config import Config
from threatshare.durations import format_duration
from threatshare.errors import ThreatshareError
from threatshare.http import Deadline
from threatshare.indicators.extract import Extractor
from threatshare.indicators.matching import blockers
from threatshare.indicators.normalise import Rejected, Skipped, normalise_host, split_url
from threatshare.ops.stats import tenant_stats
from threatshare.runtime import Runtime
from threatshare.state.ledger import Ledger
from threatshare.state.provenance import Provenance, ProvenanceBook
from threatshare.state.unblocked import UnblockList
from threatshare.timestamps import from_iso, to_iso

log = structlog.get_logger(__name__)

#: An interactive command gives up on an unreachable upstream this soon.
INTERACTIVE_SECONDS = 30.0

#: Reads whether a ZIA tenant (by its table name) has changes staged and not activated:
#: True (pending), False (all active) or None (could not be read).
PendingReader = Callable[[str], bool | None]


#: ``Match.active`` in words, for the command's text and the page alike.
ACTIVE_TEXT = {True: "yes", False: "no: staged, waiting for activation", None: "unknown"}


class NotExplainable(ValueError):
    """An input that is neither a URL nor a host."""


@dataclass
class Match:
    """One entry of one instance's category that blocks the input."""

    instance: str
    category: str
    entry: str
    source: list[str]
    first_seen: str | None
    last_seen: str | None
    sightings: int
    evidence: list[dict[str, Any]]
    expires: str | None
    never_expires: str | None
    active: bool | None
    unblock: str

    def to_json(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "category": self.category,
            "entry": self.entry,
            "source": self.source,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "sightings": self.sightings,
            "evidence": self.evidence,
            "expires": self.expires,
            "never_expires": self.never_expires,
            "active": self.active,
            "unblock": self.unblock,
        }


@dataclass
class Explanation:
    """Every entry that blocks ``input``, and the rules that keep it from being pushed."""

    input: str
    entry_form: str
    matches: list[Match] = field(default_factory=list)
    rules: list[dict[str, str]] = field(default_factory=list)

    @property
    def blocked(self) -> bool:
        return bool(self.matches)

    def to_json(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "entry_form": self.entry_form,
            "matches": [m.to_json() for m in self.matches],
            "rules": self.rules,
        }


def entry_form(text: str) -> str:
    """The entry a URL or a host would be pushed as (shaped as every record is)."""
    value = text.strip()
    if not value:
        raise NotExplainable("nothing to explain: give a URL or a host")
    try:
        if value.startswith("."):
            return "." + normalise_host(value[1:])
        parts = split_url(value)
    except (Rejected, Skipped) as exc:
        raise NotExplainable(f"{value[:200]!r} is not a URL or a host ({exc.reason})") from None
    return parts.entry or parts.host


def explain(
    config: Config,
    client: redis.Redis,
    text: str,
    *,
    pending: PendingReader,
) -> Explanation:
    """What blocks ``text`` in every configured instance's category, and why."""
    target = entry_form(text)
    result = Explanation(input=text, entry_form=target)
    candidates = blockers(target.lstrip("."))
    ledger = Ledger(client)
    tenant_pending: dict[str, bool | None] = {}
    for name, inst in sorted(config.instances.items()):
        seen = ledger.last_seen(name, candidates)
        held = [(e, s) for e, s in zip(candidates, seen, strict=True) if s is not None]
        if held:
            if inst.zia not in tenant_pending:
                tenant_pending[inst.zia] = pending(inst.zia)
            result.matches += _matches(config, client, name, held, pending=tenant_pending[inst.zia])
        result.rules += _rules(config, client, name, target)
    return result


def _matches(
    config: Config,
    client: redis.Redis,
    name: str,
    held: list[tuple[str, float]],
    *,
    pending: bool | None,
) -> list[Match]:
    inst = config.instances[name]
    entries = [e for e, _ in held]
    firsts = Ledger(client).first_seen(name, entries)
    book = ProvenanceBook(client, name).get(entries)
    last_activation = _last_activation(client, config, inst.zia)
    found = []
    for (entry, last), first in zip(held, firsts, strict=True):
        prov = book.get(entry) or Provenance()
        found.append(
            Match(
                instance=name,
                category=inst.category,
                entry=entry,
                source=prov.sources,
                first_seen=_iso(first),
                last_seen=_iso(last),
                sightings=prov.sightings,
                evidence=[
                    {"at": _iso(s.at), "verdict": s.verdict, "message": s.message}
                    for s in prov.evidence
                ],
                expires=_expires(last, inst.expire_after),
                never_expires=None if inst.expire_after else "expire_after is 0 (never)",
                active=_active(pending, prov.pushed_at, last_activation),
                unblock=shlex.join(["threatshare", "unblock", name, entry]),
            )
        )
    return found


def _active(pending: bool | None, pushed_at: int | None, activated: datetime | None) -> bool | None:
    """Enforced by ZIA now? Unknown (None) when the tenant's status could not be read."""
    if pending is None:
        return None
    if not pending:
        return True
    if pushed_at is None or activated is None:
        return False
    return datetime.fromtimestamp(pushed_at, UTC) <= activated


def _last_activation(client: redis.Redis, config: Config, zia: str) -> datetime | None:
    return from_iso(tenant_stats(client, config.zia[zia].tenant_id).get("last_activation"))


def _rules(config: Config, client: redis.Redis, name: str, target: str) -> list[dict[str, str]]:
    """The rules of instance ``name`` that would keep ``target`` (or its host) from being pushed."""
    inst = config.instances[name]
    extractor = Extractor(inst.sources, inst.allow, config.settings.protected_hosts)
    host = target.lstrip(".").split("/", 1)[0]
    found: list[dict[str, str]] = []
    for entry in dict.fromkeys([target, host]):
        reason = extractor.withdrawn(entry)
        if reason is not None:
            found.append({"instance": name, "entry": entry, "rule": reason})
    if UnblockList(client, name).matcher()(target):
        found.append({"instance": name, "entry": target, "rule": "unblocked"})
    return found


def _expires(last_seen: float, expire_after: timedelta) -> str | None:
    if not expire_after:
        return None
    return _iso(last_seen + expire_after.total_seconds())


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return to_iso(datetime.fromtimestamp(epoch, UTC))


def expires_text(match: Match, now: datetime) -> str:
    """When the entry leaves the category, in words, for people."""
    if match.expires is None:
        return "never (" + (match.never_expires or "no expiry") + ")"
    when = from_iso(match.expires)
    assert when is not None
    return f"{match.expires} (in {format_duration(when - now, largest=2, sep=' ')})"


def zia_pending_reader(rt: Runtime, seconds: float = INTERACTIVE_SECONDS) -> PendingReader:
    """Reads each ZIA tenant's activation status through its client; a tenant that cannot be
    read within ``seconds`` is reported as unknown, never as an error of the explanation."""

    def read(zia: str) -> bool | None:
        try:
            with rt.zia_client(zia, Deadline.after(seconds, rt.monotonic)) as client:
                return client.pending()
        except ThreatshareError as exc:
            log.warning("explain.status_unreadable", zia=zia, code=exc.code)
            return None

    return read
