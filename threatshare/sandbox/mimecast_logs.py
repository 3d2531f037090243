"""The records behind the Mimecast emulator: realistic log builders and a paged log book.

:func:`url_log` and :func:`impersonation_log` build full records with the fields of
Mimecast's API documentation. :class:`LogBook` answers ``get-logs`` queries: records are kept
sorted by time on insert, so a page costs O(page size + log n); page tokens are random ids
mapped to a server-side cursor (the query and the key of the last record served), bound to the
endpoint and query that created them, and a re-sent token serves the same page again. ``from``
is inclusive, ``to`` exclusive. The log book does no locking; the emulator holds its lock.

As the real API does (Mimecast's API documentation, "Recorded real answers"), every page
carries ``next``, the last one with records too, and the page after the last records is empty
and still carries ``next``; what the token of that empty page gives is :data:`PastEnd`.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

DATE_FORMAT = "%Y-%m-%dT%H:%M:%S+0000"
DATE_FIELDS = {"url": "date", "impersonation": "eventTime"}
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100
# Old page tokens are forgotten so a long demo does not grow without bound.
MAX_PAGE_TOKENS = 100_000

_Key = tuple[float, int]  # (epoch seconds, tie-breaker): the order records are served in
MakeRecord = Callable[[int, str], dict[str, Any]]
#: The answer to the token of a window's trailing empty page: another empty page with a new
#: token, a ``fail[]`` refusing the token, or an empty page carrying the same token again.
PastEnd = Literal["empty", "error", "repeat"]


def format_date(when: datetime | str) -> str:
    """A Mimecast record date, ``2024-11-14T19:44:02+0000``, from a datetime or such a string."""
    if isinstance(when, str):
        return when
    return when.astimezone(UTC).strftime(DATE_FORMAT)


def parse_date(text: object) -> float:
    """Epoch seconds of a ``+0000``, other-offset or RFC 3339 ``Z`` date-time; ValueError else."""
    if not isinstance(text, str) or "T" not in text:
        raise ValueError(f"not a date-time: {text!r}")
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"date-time without an offset: {text!r}")
    return when.timestamp()


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def url_log(url: str, date: datetime | str, **fields: Any) -> dict[str, Any]:
    """A full URL Protection click log as the API returns it; ``fields`` override defaults."""
    record: dict[str, Any] = {
        "url": url,
        "scanResult": "malicious",
        "category": "Compromised",
        "action": "block",
        "actions": "Block",
        "adminOverride": "N/A",
        "userOverride": "None",
        "userAwarenessAction": "NA",
        "date": format_date(date),
        "route": "inbound",
        "userEmailAddress": "user@example.com",
        "fromUserEmailAddress": "billing@sender.example.net",
        "ttpDefinition": "Default URL Protection Definition",
        "creationMethod": "User Click",
        "emailPartsDescription": ["Body"],
        "messageId": f"<{_digest(url, date)[:24]}@sender.example.net>",
        "subject": "Your invoice is overdue",
        "sendingIp": "198.51.100.7",
        "tagMap": {
            "UrlReputationScan": {
                "Status": ["CustomerAll", "VerdictBlock"],
                "Type": ["Compromised"],
                "Url": [url],
            }
        },
    }
    record.update(fields)
    return record


def impersonation_log(
    sender: str, date: datetime | str, identifiers: Sequence[str], **fields: Any
) -> dict[str, Any]:
    """A full Impersonation Protection log as the API returns it; ``fields`` override defaults.

    For a domain check ``similarDomain`` is the protected domain and ``stringSimilarToDomain``
    the look-alike (the sender's domain); for a name check, the protected identity and the name."""
    domain = sender.rpartition("@")[2]
    results = []
    for identifier in identifiers:
        is_domain = "domain" in identifier
        results.append(
            {
                "impersonationDomainSource": identifier,
                "similarDomain": "example.com" if is_domain else "John Doe <jd@example.com>",
                "stringSimilarToDomain": domain if is_domain else "John Doe",
                "checkerResult": "hit",
            }
        )
    record: dict[str, Any] = {
        "id": "MTOKEN:" + _digest(sender, date, *identifiers)[:40],
        "senderAddress": sender,
        "recipientAddress": "user@example.com",
        "subject": "Urgent wire transfer",
        "definition": f"Default Impersonation Definition - {len(identifiers)} hit (Tag email)",
        "hits": len(identifiers),
        "identifiers": list(identifiers),
        "action": "none",
        "taggedExternal": True,
        "taggedMalicious": True,
        "senderIpAddress": "203.0.113.5",
        "eventTime": format_date(date),
        "impersonationResults": results,
        "messageId": f"<{_digest(sender, date)[:24]}@{domain}>",
    }
    record.update(fields)
    return record


def recorded_policy_verdict_log(date: datetime | str) -> dict[str, Any]:
    """A recorded real URL log: Microsoft's OneDrive installer with ``scanResult: malicious``
    and ``category: Dangerous file extension``, a customer's attachment policy rather than a
    threat verdict."""
    url = "https://oneclient.sfx.ms/Win/Preview/OneDriveSetup.exe"
    return url_log(
        url,
        date,
        category="Dangerous file extension",
        creationMethod="Entry Scan",
        tagMap={"DangerousFileExt": {"Status": ["VerdictBlock"], "Type": ["exe"], "Url": [url]}},
    )


def recorded_free_mail_impersonation(
    date: datetime | str, identifier: str = "internal_user_name"
) -> dict[str, Any]:
    """A recorded real impersonation log: a free-mail sender flagged only by a display-name
    or content check (``internal_user_name`` or ``targeted_threat_dictionary``)."""
    return impersonation_log("johndoe@gmail.com", date, [identifier])


def generated_url_log(index: int, date: str) -> dict[str, Any]:
    """The default record of the synthetic backlog: a distinct phishing URL per index."""
    return url_log(f"https://login-{index}.phish-{index % 997}.example/verify?id={index}", date)


class _Stored:
    """Records kept sorted by time on insert."""

    def __init__(self) -> None:
        self.keys: list[_Key] = []
        self._records: list[dict[str, Any]] = []
        self._seq = 0

    def add(self, record: dict[str, Any], epoch: float) -> None:
        self._seq += 1
        key = (epoch, self._seq)
        at = bisect.bisect_right(self.keys, key)
        self.keys.insert(at, key)
        self._records.insert(at, dict(record))

    def record(self, index: int) -> dict[str, Any]:
        return self._records[index]


class _Generated(Sequence[_Key]):
    """``count`` records spread evenly over [start, end), built from their index on demand;
    the object is its own (virtual) sequence of keys, so ``bisect`` works on it."""

    def __init__(self, count: int, start: float, end: float, make: MakeRecord) -> None:
        self._count, self._start, self._step, self._make = count, start, (end - start) / count, make

    @property
    def keys(self) -> _Generated:
        return self

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> Any:
        if not 0 <= index < self._count:
            raise IndexError(index)
        return (self._start + self._step * index, index)

    def record(self, index: int) -> dict[str, Any]:
        when = datetime.fromtimestamp(self[index][0], UTC)
        return self._make(index, when.strftime(DATE_FORMAT))


class QueryRejected(Exception):
    """A query Mimecast refuses with ``fail[]`` on HTTP 200 (validation, bad page token)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(frozen=True)
class _Cursor:
    """What a page token stands for: a query and the key of the last record served."""

    endpoint: str
    query_key: str
    query: dict[str, Any]
    after: _Key | None
    total: int
    exhausted: bool = False  # nothing is left after ``after``
    shown_end: bool = False  # the trailing empty page was served


@dataclass(frozen=True)
class Page:
    records: list[dict[str, Any]]
    total: int
    next_token: str | None


def _matches(endpoint: str, record: dict[str, Any], query: dict[str, Any]) -> bool:
    if endpoint == "url":
        return all(
            query.get(name) in (None, "all") or record.get(name) == query.get(name)
            for name in ("scanResult", "route")
        )
    tagged = query.get("taggedMalicious")
    if isinstance(tagged, bool) and record.get("taggedMalicious") is not tagged:
        return False
    wanted = query.get("identifiers")
    if wanted and not set(wanted) & set(record.get("identifiers") or ()):
        return False
    actions = query.get("actions")
    return not actions or record.get("action") in actions


def _resolve(query: dict[str, Any], now: float) -> dict[str, Any]:
    """The query validated, dates as epoch seconds, defaults filled in: from = start of today,
    to = ``now`` (UTC, the emulator's clock), as Mimecast documents."""
    resolved = dict(query)
    try:
        resolved["from"] = parse_date(query["from"]) if "from" in query else now - now % 86400
        resolved["to"] = parse_date(query["to"]) if "to" in query else now
    except ValueError as exc:
        raise QueryRejected("err_validation_invalid_date", str(exc)) from None
    if not isinstance(query.get("oldestFirst", False), bool):
        raise QueryRejected("err_validation_invalid_value", "oldestFirst must be a boolean")
    if query.get("scanResult", "all") not in ("clean", "malicious", "all"):
        raise QueryRejected("err_validation_invalid_value", "scanResult is not a known value")
    return resolved


def page_size(value: Any) -> int:
    """The page size to serve: the default when absent, capped at 500."""
    if value is None:
        return DEFAULT_PAGE_SIZE
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise QueryRejected("err_validation_page_size", "pageSize must be a positive integer")
    return min(value, MAX_PAGE_SIZE)


class LogBook:
    """The URL and impersonation logs of one tenant, and the page tokens handed out."""

    def __init__(self) -> None:
        self._sources: dict[str, _Stored | _Generated] = {
            "url": _Stored(),
            "impersonation": _Stored(),
        }
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()

    def add(
        self, endpoint: str, records: Iterable[dict[str, Any]], stamped: float | None = None
    ) -> None:
        """Store ``records``, found by queries at their own date, or at ``stamped`` (epoch
        seconds) when given."""
        source = self._sources[endpoint]
        if not isinstance(source, _Stored):
            raise RuntimeError(f"{endpoint} logs come from a generator; cannot add records")
        for record in records:
            when = parse_date(record[DATE_FIELDS[endpoint]]) if stamped is None else stamped
            source.add(record, when)

    def generate(
        self, endpoint: str, count: int, start: datetime, end: datetime, make: MakeRecord
    ) -> None:
        if count < 1 or end <= start:
            raise ValueError("need count >= 1 and start < end")
        self._sources[endpoint] = _Generated(count, start.timestamp(), end.timestamp(), make)

    def page(
        self,
        endpoint: str,
        query: Any,
        page_token: Any,
        size: int,
        *,
        now: float | None = None,
        trailing: bool = True,
        past_end: PastEnd = "empty",
    ) -> Page:
        """One page of ``endpoint``'s logs for ``query`` (``data[0]``, may be None on a
        continued page) after ``page_token``; ``now`` (epoch seconds) is the default ``to``.
        ``trailing``: windows end with an empty page carrying ``next`` (the real API); else
        the last page with records carries no ``next``."""
        cursor = self._cursor(endpoint, query, page_token, time.time() if now is None else now)
        if cursor.shown_end:
            if past_end == "error":
                raise QueryRejected("err_invalid_page_token", "pageToken is past the last page")
            if past_end == "repeat":
                return Page([], cursor.total, page_token)
            return Page([], cursor.total, self._remember(cursor))
        if cursor.exhausted:
            return Page([], cursor.total, self._remember(replace(cursor, shown_end=True)))
        records, after = self._collect(endpoint, cursor, size)
        if after is not None:
            next_cursor: _Cursor | None = replace(cursor, after=after)
        elif trailing:
            # The last records still carry next; a window with none is its trailing page.
            next_cursor = replace(cursor, exhausted=True, shown_end=not records)
        else:
            next_cursor = None
        next_token = None if next_cursor is None else self._remember(next_cursor)
        return Page(records, cursor.total, next_token)

    def _cursor(self, endpoint: str, query: Any, page_token: Any, now: float) -> _Cursor:
        if query is not None and not isinstance(query, dict):
            raise QueryRejected("err_validation_data", "data[0] must be an object")
        query_key = json.dumps(query or {}, sort_keys=True)
        if page_token is not None:
            cursor = self._cursors.get(page_token) if isinstance(page_token, str) else None
            if cursor is None or cursor.endpoint != endpoint:
                raise QueryRejected("err_invalid_page_token", "pageToken is unknown or expired")
            if query is not None and cursor.query_key != query_key:
                raise QueryRejected("err_invalid_page_token", "pageToken is for another query")
            return cursor
        resolved = _resolve(query or {}, now)
        lo, hi = self._range(endpoint, resolved)
        source = self._sources[endpoint]
        if isinstance(source, _Generated):
            total = hi - lo  # generated records are taken to match the filters
        else:
            total = sum(_matches(endpoint, source.record(i), resolved) for i in range(lo, hi))
        return _Cursor(endpoint, query_key, resolved, None, total)

    def _range(self, endpoint: str, query: dict[str, Any]) -> tuple[int, int]:
        keys = self._sources[endpoint].keys
        lo = bisect.bisect_left(keys, (query["from"], -1))
        return lo, max(lo, bisect.bisect_left(keys, (query["to"], -1)))

    def _collect(
        self, endpoint: str, cursor: _Cursor, size: int
    ) -> tuple[list[dict[str, Any]], _Key | None]:
        """Up to ``size`` matching records after the cursor, and the key to continue after when
        at least one more match exists."""
        source = self._sources[endpoint]
        lo, hi = self._range(endpoint, cursor.query)
        indexes: Iterable[int]
        if cursor.query.get("oldestFirst", False):
            start = lo if cursor.after is None else bisect.bisect_right(source.keys, cursor.after)
            indexes = range(max(start, lo), hi)
        else:
            start = hi if cursor.after is None else bisect.bisect_left(source.keys, cursor.after)
            indexes = range(min(start, hi) - 1, lo - 1, -1)
        records: list[dict[str, Any]] = []
        last: _Key | None = None
        for index in indexes:
            record = source.record(index)
            if not _matches(endpoint, record, cursor.query):
                continue
            if len(records) == size:
                return records, last
            records.append(record)
            last = source.keys[index]
        return records, None

    def _remember(self, cursor: _Cursor) -> str:
        token = secrets.token_urlsafe(18)
        self._cursors[token] = cursor
        while len(self._cursors) > MAX_PAGE_TOKENS:
            self._cursors.popitem(last=False)
        return token
