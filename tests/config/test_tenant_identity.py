"""The identity of a ZIA tenant is its organisation, not its API host
(docs/design.md#tenant-identity)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from threatshare import config
from threatshare.config import Config, ZiaTenant

TOKEN_URL = "https://idp.example.com/oauth2/default/v1/token"


def oauth(scope: str, **extra: Any) -> ZiaTenant:
    fields: dict[str, Any] = {
        "cloud": "zscloud.net",
        "auth": "oauth",
        "token_url": TOKEN_URL,
        "client_id": "c",
        "client_secret": SecretStr("s"),
        "scope": scope,
        **extra,
    }
    return ZiaTenant(**fields)


def oneapi(token_url: str) -> ZiaTenant:
    return ZiaTenant(
        auth="oneapi", token_url=token_url, client_id="c", client_secret=SecretStr("s")
    )


def legacy(api_key: str, cloud: str = "zscloud.net") -> ZiaTenant:
    return ZiaTenant(
        cloud=cloud,
        auth="legacy",
        api_key=SecretStr(api_key),
        username="admin@example.com",
        password=SecretStr("p"),
    )


def test_two_oauth_orgs_on_one_cloud_are_two_tenants() -> None:
    """Two scopes with different org ids on one API host give two tenant ids."""
    first = oauth("zscloud.net::3173833::ThreatShare")
    second = oauth("zscloud.net::4000001::ThreatShare")
    assert first.resolved_api_base == second.resolved_api_base
    assert first.tenant_id != second.tenant_id
    assert first.org_id == "3173833"
    assert first.organisation == "zsapi.zscloud.net org 3173833"


def test_two_roles_of_one_org_are_one_tenant() -> None:
    """Two API roles (or clients) of one org share one tenant id: one budget, one activation."""
    first = oauth("zscloud.net::3173833::ThreatShare", client_id="a")
    second = oauth("zscloud.net::3173833::Reader", client_id="b")
    assert first.tenant_id == second.tenant_id


def test_the_same_org_id_on_two_clouds_is_two_tenants() -> None:
    """An org id is unique on its cloud only: the API base is part of the identity."""
    first = oauth("zscloud.net::3173833::ThreatShare")
    second = oauth("zscalertwo.net::3173833::ThreatShare", cloud="zscalertwo.net")
    assert first.tenant_id != second.tenant_id


def test_a_scope_without_an_org_stands_for_its_client() -> None:
    """A scope that names no org (Entra's ".default") identifies the tenant by IdP and
    client: two clients are two tenants, one client one."""
    first = oauth("api://zia/.default", client_id="a")
    again = oauth("api://zia/.default", client_id="a")
    other = oauth("api://zia/.default", client_id="b")
    assert first.org_id is None
    assert first.tenant_id == again.tenant_id != other.tenant_id


def test_oneapi_orgs_are_told_apart_by_their_vanity_host() -> None:
    """OneAPI shares api.zsapi.net: the token URL's vanity host names the org."""
    first = oneapi("https://acme.zslogin.net/oauth2/v1/token")
    again = oneapi("https://ACME.zslogin.net/oauth2/v1/token")
    second = oneapi("https://globex.zslogin.net/oauth2/v1/token")
    assert first.resolved_api_base == second.resolved_api_base
    assert first.tenant_id == again.tenant_id != second.tenant_id
    assert first.organisation == "acme.zslogin.net"


def test_legacy_orgs_are_told_apart_by_their_api_key_never_shown() -> None:
    """Legacy tables on one cloud differ by the hash of their API key; the key itself
    appears in neither the id nor the organisation's name."""
    key = "abcdefghijklmnopqrstuvwxyz0123"
    first, second = legacy(key), legacy(key[::-1])
    assert first.tenant_id != second.tenant_id
    assert first.tenant_id == legacy(key).tenant_id
    assert key not in first.organisation and key not in first.tenant_id
    assert first.organisation.startswith("zsapi.zscloud.net api key ")


def test_check_says_when_two_tables_name_one_org(tmp_path: Path) -> None:
    """`check` warns that two [zia.*] tables of one organisation share its budgets; two
    organisations draw no warning."""
    path = tmp_path / "t.toml"
    path.write_text("")
    shared = Config(
        zia={
            "a": oauth("zscloud.net::1::ThreatShare"),
            "b": oauth("zscloud.net::1::Other"),
            "c": oauth("zscloud.net::2::ThreatShare"),
        }
    )
    warnings = [w for w in config.warnings_for(path, shared) if w.startswith("zia.")]
    assert warnings == [
        "zia.a, zia.b: name one ZIA organisation (zsapi.zscloud.net org 1); they share its "
        "activations, quota readings, warnings and rate budget"
    ]
