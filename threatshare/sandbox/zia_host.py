"""One ZIA API host serving several organisations, as ``zsapi.<cloud>`` and ``api.zsapi.net``
do: each request goes to the emulated tenant its credential belongs to.

The IdP issues a token per client and scope (``<cloud>::<orgId>::<role>``), so a bearer token
names its organisation; a legacy login names its admin, and its session cookie was issued by one
tenant. A request no tenant owns is answered 401, as ZIA answers a token it does not know.
"""

from __future__ import annotations

import threading

from threatshare.sandbox.idp import IdpEmulator
from threatshare.sandbox.server import Request, Response, json_response
from threatshare.sandbox.zia import ZiaEmulator


class ZiaHost:
    """An app for ``EmulatorServer`` that routes to one :class:`ZiaEmulator` per organisation."""

    def __init__(self, idp: IdpEmulator | None = None) -> None:
        self.idp = idp
        self._lock = threading.Lock()
        self._tenants: list[ZiaEmulator] = []

    def add(self, emulator: ZiaEmulator) -> None:
        """Serve ``emulator``'s organisation on this host too."""
        with self._lock:
            self._tenants.append(emulator)

    def __call__(self, request: Request) -> Response:
        claims = None
        header = request.headers.get("Authorization") or ""
        if header[:7].lower() == "bearer " and self.idp is not None:
            claims = self.idp.validate(header[7:].strip())
            if claims is None:
                return _unknown()
        with self._lock:
            tenants = list(self._tenants)
        for tenant in tenants:
            if tenant.owns(request, claims):
                return tenant(request)
        return _unknown()


def _unknown() -> Response:
    body = {"code": "UNAUTHORIZED", "message": "The access token is invalid or expired"}
    return json_response(401, body, **{"WWW-Authenticate": 'Bearer error="invalid_token"'})
