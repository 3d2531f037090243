"""One emulated ZIA API host serving two organisations, routed by the token's org."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2 as httpx
import pytest

from threatshare.sandbox.idp import IdpEmulator
from threatshare.sandbox.server import EmulatorServer
from threatshare.sandbox.zia import ZiaEmulator
from threatshare.sandbox.zia_host import ZiaHost
from threatshare.sandbox.zia_sessions import expected_obfuscation

SCOPES = {"a": "zscloud.net::1001::threatshare", "b": "zscloud.net::1002::threatshare"}


@dataclass
class Host:
    idp: IdpEmulator
    orgs: dict[str, ZiaEmulator]
    url: str
    token_url: str

    def token(self, org: str) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_id": f"client-{org}",
            "client_secret": "secret",
            "scope": SCOPES[org],
        }
        return str(httpx.post(self.token_url, data=form).json()["access_token"])

    def call(self, token: str, method: str, path: str, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, **kw)  # type: ignore[arg-type]


@pytest.fixture
def host() -> Iterator[Host]:
    idp = IdpEmulator()
    router = ZiaHost(idp)
    orgs = {}
    for org, scope in SCOPES.items():
        idp.add_client(f"client-{org}", "secret", scope=scope)
        orgs[org] = ZiaEmulator(idp=idp, scope=scope, enforce_limits=False)
        router.add(orgs[org])
    with EmulatorServer(idp) as idp_server, EmulatorServer(router) as server:
        yield Host(idp, orgs, server.url, f"{idp_server.url}/oauth2/v1/token")


def test_each_token_reaches_its_own_org(host: Host) -> None:
    """A category created with org a's token exists in a only, and b's activation activates
    only b."""
    body = {"configuredName": "Mine", "superCategory": "USER_DEFINED", "urls": ["x.example"]}
    created = host.call(host.token("a"), "POST", "/urlCategories", json=body)
    assert created.status_code == 200
    assert [c["configuredName"] for c in host.orgs["a"].categories()] == ["Mine"]
    assert host.orgs["b"].categories() == []
    assert host.call(host.token("b"), "POST", "/status/activate").status_code == 200
    assert (host.orgs["a"].activations, host.orgs["b"].activations) == (0, 1)
    assert host.orgs["a"].active_urls("Mine") == set()


def test_a_token_no_org_knows_is_refused(host: Host) -> None:
    """An unknown or missing token gets a 401 and reaches no org."""
    assert host.call("not-a-token", "GET", "/urlCategories/urlQuota").status_code == 401
    anonymous = httpx.get(f"{host.url}/api/v1/urlCategories/urlQuota")
    assert anonymous.status_code == 401
    assert host.orgs["a"].calls == [] and host.orgs["b"].calls == []


def test_legacy_logins_and_sessions_reach_their_own_org() -> None:
    """A legacy login goes to the org of its admin, and its session cookie stays there."""
    router = ZiaHost()
    orgs = {}
    for org in ("a", "b"):
        orgs[org] = ZiaEmulator(
            enforce_limits=False,
            api_key=f"{org}-key-abcdefghijklmnop",
            username=f"admin@{org}.example",
            password="pw",
        )
        router.add(orgs[org])
    with EmulatorServer(router) as server:
        timestamp = str(int(time.time() * 1000))
        login = {
            "apiKey": expected_obfuscation("b-key-abcdefghijklmnop", timestamp),
            "username": "admin@b.example",
            "password": "pw",
            "timestamp": timestamp,
        }
        with httpx.Client(base_url=f"{server.url}/api/v1") as client:
            assert client.post("/authenticatedSession", json=login).status_code == 200
            cookie = client.cookies.get("JSESSIONID")
            assert cookie
            quota = client.get(
                "/urlCategories/urlQuota", headers={"Cookie": f"JSESSIONID={cookie}"}
            )
            assert quota.status_code == 200
    assert [c.status for c in orgs["b"].calls] == [200, 200]
    assert orgs["a"].calls == []
