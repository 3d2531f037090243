"""The credential of each ZIA ``auth`` mode (docs/design.md#pushing-to-zia): bearer tokens from a
third-party IdP (``oauth``) or from ZIdentity (``oneapi``), or the legacy API-key session
(``legacy``)."""

from __future__ import annotations

import httpx2 as httpx

from threatshare.auth import ClientCredentials, Credential, LegacySession
from threatshare.config import ZiaTenant
from threatshare.scrub import NO_SECRETS, Scrubber


def build_credential(
    tenant: ZiaTenant,
    http: httpx.Client,
    transport: httpx.BaseTransport | None = None,
    scrub: Scrubber = NO_SECRETS,
) -> Credential:
    """The credential of a tenant's ``auth`` mode (docs/design.md#pushing-to-zia). ``http`` is the
    ZIA client the legacy login goes through; ``transport`` reaches the token endpoint (tests)."""
    if tenant.auth == "legacy":
        return legacy_session(tenant, http, scrub)
    return token_credential(tenant, transport, scrub)


def legacy_session(
    tenant: ZiaTenant, http: httpx.Client, scrub: Scrubber = NO_SECRETS
) -> LegacySession:
    """The obfuscated-API-key session of a ``legacy`` tenant, logging in through ``http``."""
    if tenant.api_key is None or tenant.username is None or tenant.password is None:
        raise ValueError("legacy ZIA auth needs api_key, username and password")
    return LegacySession(
        http,
        api_key=tenant.api_key,
        username=tenant.username,
        password=tenant.password,
        idle=tenant.session_idle.total_seconds(),
        scrub=scrub,
    )


def token_credential(
    tenant: ZiaTenant, transport: httpx.BaseTransport | None = None, scrub: Scrubber = NO_SECRETS
) -> ClientCredentials:
    """The bearer-token credential of an ``oauth`` or ``oneapi`` tenant; unlike a legacy
    session it is not tied to one connection, so a process can reuse it across runs."""
    if tenant.token_url is None or tenant.client_id is None or tenant.client_secret is None:
        raise ValueError(f"{tenant.auth} ZIA auth needs token_url, client_id and client_secret")
    return ClientCredentials(
        token_url=tenant.token_url,
        client_id=tenant.client_id,
        client_secret=tenant.client_secret,
        error_code="zia_auth",
        what="ZIA token endpoint",
        auth_method=tenant.token_auth,
        scope=tenant.scope,
        audience=tenant.audience if tenant.auth == "oneapi" else None,
        transport=transport,
        scrub=scrub,
    )
