"""Recovering the URL a link wrapper or open redirector carries (``data/wrappers.txt``).

Each decoder takes the wrapper URL's path and query as a browser serialises them (percent
encoding kept, case kept) and returns the embedded target, or None when the link does not
carry one that can be read. What comes back is untrusted text like any URL from a log: the
caller normalises and filters it as such.
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from collections.abc import Callable
from urllib.parse import parse_qs, unquote

__all__ = ["DECODERS", "decoder_for"]

Decoder = Callable[[str, str], str | None]

# Proofpoint URL Defense v3: `/v3/__URL__;BASE64!!...`; inside URL, `*` takes the next byte of
# BASE64's decoded text and `**X` a run of them whose length X encodes (2 for A, 3 for B ...).
_V3 = re.compile(r"/v3/__(?P<url>.+?)__;(?P<bytes>[A-Za-z0-9_-]*)!")
_V3_TOKEN = re.compile(r"\*(\*.)?")
_V3_RUNS = {c: n for n, c in enumerate(string.ascii_letters + string.digits + "-_", start=2)}


def _query(names: tuple[str, ...]) -> Decoder:
    def decode(path: str, query: str) -> str | None:
        values = parse_qs(query, keep_blank_values=False)
        lowered = {k.lower(): v for k, v in values.items()}
        for name in names:
            found = lowered.get(name)
            if found and found[0].strip():
                return found[0]
        return None

    return decode


def _path(skip: int) -> Decoder:
    def decode(path: str, query: str) -> str | None:
        segments = path.split("/")[1:]
        if len(segments) <= skip:
            return None
        rest = unquote("/".join(segments[skip:]))
        if query and "?" not in rest:
            rest = f"{rest}?{query}"
        if not rest.strip("/"):
            return None
        if "://" not in rest[:12]:
            rest = "https://" + rest.lstrip("/")
        return rest

    return decode


def _proofpoint_v2(path: str, query: str) -> str | None:
    encoded = _query(("u",))(path, query)
    if encoded is None:
        return None
    return unquote(encoded.replace("-", "%").replace("_", "/"))


def _proofpoint_v3(path: str, query: str) -> str | None:
    match = _V3.search(path)
    if match is None:
        return None
    url = unquote(match["url"])
    try:
        filler = base64.urlsafe_b64decode(match["bytes"] + "==").decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    position = 0
    pieces: list[str] = []
    last = 0
    for token in _V3_TOKEN.finditer(url):
        length = 1 if token[1] is None else _V3_RUNS.get(token[1][-1], 0)
        if length == 0 or position + length > len(filler):
            return None
        pieces.append(url[last : token.start()])
        pieces.append(filler[position : position + length])
        position += length
        last = token.end()
    pieces.append(url[last:])
    return "".join(pieces)


def _bing(path: str, query: str) -> str | None:
    encoded = _query(("u",))(path, query)
    if encoded is None or not encoded.startswith("a1"):
        return None
    data = encoded[2:]
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def _opaque(path: str, query: str) -> str | None:
    return None


#: Decoders with no argument, by the name the data file gives them.
DECODERS: dict[str, Decoder] = {
    "proofpoint_v2": _proofpoint_v2,
    "proofpoint_v3": _proofpoint_v3,
    "bing": _bing,
    "opaque": _opaque,
}


def decoder_for(spec: str) -> Decoder:
    """The decoder a data line names: ``query:A,B``, ``path:N`` or one of :data:`DECODERS`.
    Raises ValueError for anything else."""
    kind, _, argument = spec.partition(":")
    if kind == "query" and argument:
        return _query(tuple(name.strip().lower() for name in argument.split(",") if name))
    if kind == "path" and argument.isdigit():
        return _path(int(argument))
    if spec in DECODERS:
        return DECODERS[spec]
    raise ValueError(f"unknown decoder {spec!r}")
