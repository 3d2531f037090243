"""Failures an emulated ZIA tenant can be told to answer with, and ZIA's bodies for them.

Kinds, as the real service answers them (recorded in the SDK's test cassettes):
``"409"`` (``EDIT_LOCK_NOT_AVAILABLE`` with no message), ``"409_barrier"`` and ``"412"``
(``UNEXPECTED_ERROR`` "Failed during enter Org barrier"), ``"400_field"`` (a 400
``INVALID_INPUT_ARGUMENT`` that names a field, "name cannot be null", not an entry),
``"503"``, ``"500"``, ``"500_empty"`` (no body), ``"429"`` (``Retry-After`` header and body),
``"429_body"`` (only the body's ``"Retry-After": "N seconds"``), ``"403_readonly"``
(``STATE_READONLY`` with ``x-zscaler-mode: read-only``; GETs are spared, as during ZIA's
maintenance), ``"403"`` (``SCOPE_LIMITED``), ``"401"`` and ``"drop"`` (the call is performed,
then the connection is dropped mid-response, so the client cannot know whether it took effect).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from threatshare.sandbox.server import Response, json_response

FAILURE_KINDS = frozenset(
    {
        "409",
        "409_barrier",
        "412",
        "400_field",
        "503",
        "500",
        "500_empty",
        "429",
        "429_body",
        "403_readonly",
        "403",
        "401",
        "drop",
    }
)
#: Answered before the rate limiter: they use up no allowance (401: no tenant; 429: refused).
UNCOUNTED = frozenset({"401", "429", "429_body"})
#: What a random temporary failure is drawn from by default (the temporary ZIA answers of
#: docs/design.md#error-policy).
TEMPORARY_KINDS = ("409", "409_barrier", "429", "429_body", "500", "503", "403_readonly")

_BARRIER = {"code": "UNEXPECTED_ERROR", "message": "Failed during enter Org barrier"}
_READ_ONLY = {
    "code": "STATE_READONLY",
    "message": "The API service is undergoing a scheduled upgrade and is in read-only mode.",
}


def failure_response(kind: str, retry_after: int) -> Response:
    """ZIA's answer for a failure of ``kind``."""
    limited = {"message": "Rate Limit (1/SECOND) exceeded", "Retry-After": f"{retry_after} seconds"}
    if kind == "500_empty":
        return Response(500, b"", {})
    answers: dict[str, tuple[int, dict[str, str], dict[str, str]]] = {
        "409": (409, {"code": "EDIT_LOCK_NOT_AVAILABLE"}, {}),
        "409_barrier": (409, _BARRIER, {}),
        "412": (412, _BARRIER, {}),
        "400_field": (
            400,
            {"code": "INVALID_INPUT_ARGUMENT", "message": "name cannot be null"},
            {},
        ),
        "503": (503, {"message": "Service Unavailable"}, {}),
        "500": (500, {"code": "UNEXPECTED_ERROR", "message": "Request processing failed"}, {}),
        "429": (429, limited, {"Retry-After": str(retry_after)}),
        "429_body": (429, limited, {}),
        "403_readonly": (403, _READ_ONLY, {"x-zscaler-mode": "read-only"}),
        "403": (
            403,
            {"code": "SCOPE_LIMITED", "message": "The API role does not allow this operation"},
            {},
        ),
        "401": (401, {"code": "SESSION_NOT_VALID", "message": "Session is not valid"}, {}),
    }
    status, body, headers = answers[kind]
    return json_response(status, body, **headers)


@dataclass
class _Requested:
    kind: str
    remaining: int
    path: str | None


@dataclass(frozen=True)
class Failure:
    kind: str
    #: Position in the queue of requested failures; None for a random one.
    slot: int | None


class FailurePlan:
    """Requested failures (first matching one wins) and seeded random ones. Not thread-safe:
    the emulator locks."""

    def __init__(self, seed: int = 0) -> None:
        self._queue: list[_Requested] = []
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self._random = random.Random(seed)

    def add(self, kind: str, count: int, path: str | None) -> None:
        if kind not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {kind!r}")
        self._queue.append(_Requested(kind, count, path))

    def pending(
        self, names: Collection[str | None], method: str, rate: float, kinds: Sequence[str]
    ) -> Failure | None:
        """The failure a call to a path known by ``names`` should get, without using it up."""
        for slot, requested in enumerate(self._queue):
            if requested.path is not None and requested.path not in names:
                continue
            if requested.kind == "403_readonly" and method == "GET":
                continue
            return Failure(requested.kind, slot)
        if rate > 0 and kinds and self._random.random() < rate:
            kind = self._random.choice(kinds)
            if not (kind == "403_readonly" and method == "GET"):
                return Failure(kind, None)
        return None

    def consume(self, failure: Failure) -> None:
        if failure.slot is None:
            return
        requested = self._queue[failure.slot]
        requested.remaining -= 1
        if requested.remaining <= 0:
            del self._queue[failure.slot]
