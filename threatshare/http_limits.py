"""The size cap on every upstream answer (docs/design.md#security: bodies read as a stream, under a
cap after decompression).

:class:`BoundedTransport` wraps the transport of every client threatshare builds (the API
clients through :func:`threatshare.http.make_client`, the token endpoints through authlib), so
no caller can forget it. It refuses an answer whose ``Content-Length`` is over the cap before
reading any of it, decodes ``gzip`` and ``deflate`` itself in bounded pieces, and stops at the
cap: a 1 MB answer that inflates to 1 GiB costs at most the cap in memory, never the 1 GiB.
Other content codings are not asked for, and refused when sent anyway.
"""

from __future__ import annotations

import functools
import ssl
import zlib
from collections.abc import Iterator

import httpx2 as httpx

from threatshare.errors import UpstreamUnavailable

#: Largest answer, after decompression, that we read from an upstream.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
#: Decoded bytes produced per step, however small the compressed input.
DECODE_PIECE = 256 * 1024
ACCEPTED_ENCODINGS = "gzip, deflate"
_DROPPED_HEADERS = {"content-encoding", "content-length"}


class ResponseTooLarge(UpstreamUnavailable):
    """An upstream answer over :data:`MAX_RESPONSE_BYTES` (declared or after decoding)."""

    default_code = "response_too_large"


def _limit_text(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"


def too_large(host: str, limit: int) -> ResponseTooLarge:
    return ResponseTooLarge(f"{host}: answer larger than the {_limit_text(limit)} size limit")


class _Inflater:
    """zlib decoding (gzip, or deflate with or without its zlib header) in bounded pieces."""

    def __init__(self, encoding: str) -> None:
        self._raw_deflate_tried = encoding != "deflate"
        wbits = zlib.MAX_WBITS | 16 if encoding in ("gzip", "x-gzip") else zlib.MAX_WBITS
        self._zlib = zlib.decompressobj(wbits)

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            piece = self._zlib.decompress(data, DECODE_PIECE)
        except zlib.error:
            if self._raw_deflate_tried:
                raise UpstreamUnavailable("answer is not validly compressed") from None
            # Some servers send raw deflate without the zlib header.
            self._raw_deflate_tried = True
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            piece = self._zlib.decompress(data, DECODE_PIECE)
        self._raw_deflate_tried = True
        while piece:
            yield piece
            piece = self._zlib.decompress(self._zlib.unconsumed_tail, DECODE_PIECE)

    def flush(self) -> bytes:
        return self._zlib.flush()


class _BoundedStream(httpx.SyncByteStream):
    """The decoded body of one answer, ending in :class:`ResponseTooLarge` at the cap."""

    def __init__(
        self, raw: httpx.SyncByteStream, inflater: _Inflater | None, host: str, limit: int
    ) -> None:
        self._raw = raw
        self._inflater = inflater
        self._host = host
        self._limit = limit

    def _decoded(self) -> Iterator[bytes]:
        for chunk in self._raw:
            if self._inflater is None:
                yield chunk
            else:
                yield from self._inflater.decode(chunk)
        if self._inflater is not None:
            yield self._inflater.flush()

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for piece in self._decoded():
            seen += len(piece)
            if seen > self._limit:
                self.close()
                raise too_large(self._host, self._limit)
            yield piece

    def close(self) -> None:
        self._raw.close()


class BoundedTransport(httpx.BaseTransport):
    """``inner`` with every answer's body capped at ``limit`` bytes after decoding."""

    def __init__(self, inner: httpx.BaseTransport, limit: int = MAX_RESPONSE_BYTES) -> None:
        self._inner = inner
        self._limit = limit

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = ACCEPTED_ENCODINGS
        response = self._inner.handle_request(request)
        host = request.url.host
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self._limit:
            response.close()
            raise too_large(host, self._limit)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            response.close()
            raise UpstreamUnavailable(f"{host}: answer in an unsupported encoding {encoding!r}")
        stream: httpx.SyncByteStream
        try:
            # An inner transport that read the answer itself (a proxy in tests) has decoded it.
            stream, inflater = httpx.ByteStream(response.content), None
        except httpx.ResponseNotRead:
            assert isinstance(response.stream, httpx.SyncByteStream)
            stream = response.stream
            inflater = None if encoding in ("", "identity") else _Inflater(encoding)
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in _DROPPED_HEADERS
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_BoundedStream(stream, inflater, host, self._limit),
            request=request,
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()


@functools.cache
def verifying_context() -> ssl.SSLContext:
    """The process's one verifying TLS context. Building one reads the whole CA bundle (about
    25 ms of CPU); a run builds clients afresh, and a fleet worker runs many a second, so they
    share this one (an SSL context is safe to share between clients and threads)."""
    return httpx.create_ssl_context(verify=True)


def bounded(transport: httpx.BaseTransport | None) -> BoundedTransport:
    """``transport`` (by default a verifying HTTPS transport) under the size cap."""
    inner = transport if transport is not None else httpx.HTTPTransport(verify=verifying_context())
    return BoundedTransport(inner)
