"""The rules of what is never blocked (docs/design.md#what-is-never-blocked), as data.

Each rule set is a text file shipped in ``threatshare/indicators/data/`` with a ``# version:``
line, extended by the configuration's ``settings`` lists; the public suffixes come from the
``publicsuffixlist`` package (:mod:`threatshare.indicators.suffixes`):

=======================  =====================================  ==============================
rule set                 shipped in                             extended by
=======================  =====================================  ==============================
protected hosts          ``protected_hosts.txt``                ``settings.protected_hosts``
shared endpoints         ``protected_endpoints.txt``            ``settings.protected_endpoints``
wrappers, redirectors    ``wrappers.txt``                       ``settings.wrappers``
policy verdicts          ``policy_verdicts.txt``                ``settings.policy_verdicts``
public suffixes          the ``publicsuffixlist`` package       (none)
=======================  =====================================  ==============================

:func:`rules_digest` is what decides "the rules changed" for an instance: the shipped data,
the suffix list, the settings lists and the instance's ``allow``. A new digest makes the next
run withdraw what today's rules would not push.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from threatshare.config import Config, Settings
from threatshare.indicators.normalise import Rejected, Skipped, normalise_host
from threatshare.indicators.suffixes import SuffixList, suffix_list
from threatshare.indicators.wrappers import Decoder, decoder_for

__all__ = [
    "DATA_FILES",
    "DataFile",
    "Endpoint",
    "Rules",
    "Wrapper",
    "host_keys",
    "rules_digest",
    "shipped_data",
    "summary_lines",
    "verdict_key",
]

DATA_FILES = {
    "protected_hosts": "protected_hosts.txt",
    "protected_endpoints": "protected_endpoints.txt",
    "wrappers": "wrappers.txt",
    "policy_verdicts": "policy_verdicts.txt",
}
#: Where the shipped data lives; tests point it elsewhere to play an upgrade of the data.
DATA_DIR: Traversable | Path = resources.files("threatshare.indicators").joinpath("data")

_VERSION = re.compile(r"#\s*version:\s*(\S+)", re.IGNORECASE)
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class DataFile:
    """One shipped rule set: its version line, its rule lines (comments gone), its digest."""

    name: str
    version: str
    lines: tuple[str, ...]
    digest: str


@dataclass(frozen=True)
class Endpoint:
    """A shared endpoint: path segments under a host zone (``*``: any one segment)."""

    segments: tuple[str, ...]

    def touches(self, segments: Sequence[str]) -> bool:
        """Whether a path (its segments) is at, under or above this endpoint."""
        for mine, theirs in zip(self.segments, segments, strict=False):
            if mine != "*" and mine != theirs:
                return False
        return True


@dataclass(frozen=True)
class Wrapper:
    """A wrapper family on one host zone: the path it answers on, and how to read its target."""

    prefix: str  # "" or the start of the first label (``protect`` of ``protect*.mimecast.com``)
    segments: tuple[str, ...]
    decode: Decoder

    def matches(self, host: str, zone: str, segments: Sequence[str]) -> bool:
        if self.prefix:
            if host == zone or not host.endswith("." + zone):
                return False
            label = host[: -len(zone) - 1].rpartition(".")[2]
            if not label.startswith(self.prefix):
                return False
        if len(segments) < len(self.segments):
            return False
        return all(m == "*" or m == s for m, s in zip(self.segments, segments, strict=False))


def verdict_key(name: str) -> str:
    """A verdict name as it is compared: lower case, letters and digits only."""
    return _NOT_ALNUM.sub("", name.lower())


def host_keys(values: Iterable[str]) -> frozenset[str]:
    """Hosts of a list, in the form shaped entries use (IDNA, lower case). A value may be a
    host, a URL or an entry as ZIA shows it (``https://Partner.example/`` → ``partner.example``,
    ``.partner.example`` → ``partner.example``)."""
    keys = set()
    for value in values:
        text = value.strip().lower().lstrip("*").lstrip(".")
        if "://" in text:
            text = text.partition("://")[2]
        text = re.split(r"[/?#]", text, maxsplit=1)[0].rpartition("@")[2]
        if text.count(":") == 1:
            text = text.partition(":")[0]  # a port: the host is what is allowed
        if not text:
            continue
        try:
            keys.add(normalise_host(text))
        except (Rejected, Skipped):
            keys.add(text.rstrip("."))  # e.g. a private address: kept as written
    return frozenset(keys)


def _read(directory: Traversable | Path, name: str, file: str) -> DataFile:
    text = directory.joinpath(file).read_text("utf-8")
    version = "unversioned"
    lines = []
    for raw in text.splitlines():
        if (match := _VERSION.match(raw.strip())) and version == "unversioned":
            version = match.group(1)
        line = raw.partition("#")[0].strip()
        if line:
            lines.append(line)
    return DataFile(name, version, tuple(lines), hashlib.sha256(text.encode()).hexdigest()[:16])


@cache
def _shipped(directory: Traversable | Path) -> dict[str, DataFile]:
    return {name: _read(directory, name, file) for name, file in DATA_FILES.items()}


def shipped_data() -> dict[str, DataFile]:
    """The rule sets shipped in :data:`DATA_DIR`, read once per directory."""
    return _shipped(DATA_DIR)


def _split_rule(line: str) -> tuple[str, tuple[str, ...]]:
    host, _, path = line.partition("/")
    return host.strip().lower(), tuple(s for s in path.strip().lower().split("/") if s)


class Rules:
    """Every rule set, shipped and configured, indexed for the extractor."""

    def __init__(
        self,
        protected_hosts: Sequence[str] = (),
        protected_endpoints: Sequence[str] = (),
        wrappers: Sequence[str] = (),
        policy_verdicts: Sequence[str] = (),
    ) -> None:
        data = shipped_data()
        self.data = data
        self.suffixes: SuffixList = suffix_list()
        self.added = {
            "protected_hosts": len(protected_hosts),
            "protected_endpoints": len(protected_endpoints),
            "wrappers": len(wrappers),
            "policy_verdicts": len(policy_verdicts),
        }
        self.protected = host_keys([*data["protected_hosts"].lines, *protected_hosts])
        self.endpoints: dict[str, list[Endpoint]] = {}
        for line in [*data["protected_endpoints"].lines, *protected_endpoints]:
            host, segments = _split_rule(line)
            if segments:
                self.endpoints.setdefault(_host_key(host), []).append(Endpoint(segments))
        self.wrappers: dict[str, list[Wrapper]] = {}
        for line in [*data["wrappers"].lines, *wrappers]:
            where, _, decoder = line.partition(" ")
            host, segments = _split_rule(where)
            prefix = ""
            if "*" in host:
                first, _, host = host.partition(".")
                prefix = first.rstrip("*")
            wrapper = Wrapper(prefix, segments, decoder_for(decoder.strip()))
            self.wrappers.setdefault(_host_key(host), []).append(wrapper)
        names = [*data["policy_verdicts"].lines, *policy_verdicts]
        self.verdicts = frozenset(verdict_key(name) for name in names)

    @classmethod
    def of(cls, settings: Settings) -> Rules:
        """The rules of a configuration: shipped data plus its settings lists."""
        return cls(
            settings.protected_hosts,
            settings.protected_endpoints,
            settings.wrappers,
            settings.policy_verdicts,
        )

    def is_policy_verdict(self, name: str) -> bool:
        """Whether a verdict (a URL log's category or tag) is a customer's policy."""
        return verdict_key(name) in self.verdicts

    def wrapper_for(self, host: str, zone: str, path: str) -> Wrapper | None:
        """The wrapper family of ``zone`` (a zone ``host`` is on or under) that ``path``
        (serialised, any case) belongs to, or None."""
        segments = [s for s in path.lower().split("/") if s]
        for wrapper in self.wrappers.get(zone, ()):
            if wrapper.matches(host, zone, segments):
                return wrapper
        return None

    def summary(self) -> list[str]:
        """One line per rule set: version, counts, configuration additions (for ``check``)."""
        data = self.data
        endpoints = sum(len(v) for v in self.endpoints.values())
        wrapper_count = sum(len(v) for v in self.wrappers.values())
        return [
            f"public suffixes: list {self.suffixes.version} ({self.suffixes.rules} rules, "
            "package publicsuffixlist)",
            f"protected hosts: data {data['protected_hosts'].version}, {len(self.protected)} "
            f"hosts ({self.added['protected_hosts']} from settings.protected_hosts)",
            f"shared endpoints: data {data['protected_endpoints'].version}, {endpoints} "
            f"endpoints ({self.added['protected_endpoints']} from settings.protected_endpoints)",
            f"wrappers and redirectors: data {data['wrappers'].version}, {wrapper_count} "
            f"families ({self.added['wrappers']} from settings.wrappers)",
            f"policy verdicts: data {data['policy_verdicts'].version}, {len(self.verdicts)} "
            f"names ({self.added['policy_verdicts']} from settings.policy_verdicts)",
        ]


def _host_key(host: str) -> str:
    keys = host_keys([host])
    return next(iter(keys)) if keys else host


def summary_lines(config: Config) -> list[str]:
    """What ``check`` prints about the rules, one line per rule set."""
    return Rules.of(config.settings).summary()


def rules_digest(config: Config, instance: str) -> str:
    """A digest of every rule that decides what ``instance`` may push: the shipped data, the
    suffix list, the settings lists and the instance's ``allow``."""
    settings = config.settings
    parts = {
        "data": {name: data.digest for name, data in shipped_data().items()},
        "suffixes": suffix_list().digest,
        "protected_hosts": settings.protected_hosts,
        "protected_endpoints": settings.protected_endpoints,
        "wrappers": settings.wrappers,
        "policy_verdicts": settings.policy_verdicts,
        "allow": config.instances[instance].allow,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
