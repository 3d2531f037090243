"""The emulated ZIA tenant over HTTP: categories, quota, URL refusals, activation, auth, faults."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2 as httpx
import pytest
from pydantic import SecretStr

from threatshare.auth import LegacySession, obfuscate_api_key
from threatshare.sandbox.idp import IdpEmulator
from threatshare.sandbox.server import EmulatorServer
from threatshare.sandbox.zia import ZiaEmulator
from threatshare.sandbox.zia_sessions import expected_obfuscation

SCOPE = "zscloud.net::3173833::ThreatShare"
AUDIENCE = "https://api.zscaler.com"
API_KEY = "k3yABCDEFGHIJKLmnop"
NAME = "Mimecast Malicious URLs"


@dataclass
class Tenant:
    zia: ZiaEmulator
    idp: IdpEmulator
    url: str
    token_url: str
    #: A client without credentials (logins, token requests, absolute URLs).
    raw: httpx.Client
    #: A client of the /api/v1 base with a bearer token of this tenant.
    http: httpx.Client

    def token(self, client_id: str = "app", secret: str = "secret", **form: str) -> str:
        creds = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
        }
        response = self.raw.post(self.token_url, data={**creds, **form})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


@pytest.fixture
def tenant() -> Iterator[Tenant]:
    """A tenant with limits off (these tests are about behaviour, not pacing) and a bearer."""
    idp = IdpEmulator()
    idp.add_client("app", "secret", scope=SCOPE)
    zia = ZiaEmulator(
        idp=idp,
        scope=SCOPE,
        enforce_limits=False,
        api_key=API_KEY,
        username="api-admin@example.com",
        password="pa55word",
    )
    with (
        EmulatorServer(idp) as idp_server,
        EmulatorServer(zia) as zia_server,
        httpx.Client(timeout=10) as raw,
    ):
        token_url = f"{idp_server.url}/oauth2/v1/token"
        token = Tenant(zia, idp, zia_server.url, token_url, raw, raw).token(scope=SCOPE)
        with httpx.Client(
            base_url=f"{zia_server.url}/api/v1",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ) as http:
            yield Tenant(zia, idp, zia_server.url, token_url, raw, http)


def create(http: httpx.Client, name: str = NAME, urls: list[str] | None = None) -> dict:
    body = {"configuredName": name, "superCategory": "USER_DEFINED", "urls": urls or []}
    response = http.post("/urlCategories", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def change(
    http: httpx.Client, category: str, action: str, urls: list[str], name: str = NAME
) -> httpx.Response:
    body = {"configuredName": name, "superCategory": "USER_DEFINED", "urls": urls}
    return http.put(f"/urlCategories/{category}", params={"action": action}, json=body)


# -- categories ---------------------------------------------------------------------------------


def test_create_answers_the_new_custom_category(tenant: Tenant) -> None:
    """POST creates CUSTOM_01, CUSTOM_02... as custom USER_DEFINED URL categories."""
    first = create(tenant.http, urls=["bad.example"])
    second = create(tenant.http, name="Other")
    assert (first["id"], second["id"]) == ("CUSTOM_01", "CUSTOM_02")
    assert first["superCategory"] == "USER_DEFINED"
    assert first["customCategory"] is True
    assert first["type"] == "URL_CATEGORY"
    assert first["urls"] == ["bad.example"]
    assert first["customUrlsCount"] == 1


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"configuredName": NAME, "superCategory": "USER_DEFINED"}, 409, "DUPLICATE_ITEM"),
        ({"configuredName": "New"}, 400, "INVALID_INPUT_ARGUMENT"),
        ({"superCategory": "USER_DEFINED"}, 400, "INVALID_INPUT_ARGUMENT"),
        (
            {"configuredName": "Bad/Name", "superCategory": "USER_DEFINED"},
            400,
            "INVALID_INPUT_ARGUMENT",
        ),
        (
            {"configuredName": "New", "superCategory": "USER_DEFINED", "customCategory": "true"},
            400,
            None,
        ),
        (
            {"configuredName": "New", "superCategory": "USER_DEFINED", "urls": "a.example"},
            400,
            None,
        ),
    ],
)
def test_create_refusals(tenant: Tenant, body: dict, status: int, code: str | None) -> None:
    """A duplicate name, a missing field, a bad name or a mistyped field is refused."""
    create(tenant.http)
    response = tenant.http.post("/urlCategories", json=body)
    assert response.status_code == status
    assert response.json().get("code") == code
    if code is None:
        assert response.json()["message"] == "Request body is invalid."
    assert len(tenant.zia.categories()) == 1


def test_list_lite_and_get(tenant: Tenant) -> None:
    """Listing honours customOnly and includeOnlyUrlKeywordCounts (sizes in customUrlsCount,
    as real listings carry them, no urlKeywordCounts); lite and get find it."""
    created = create(tenant.http, urls=["a.example", "b.example"])
    everything = tenant.http.get("/urlCategories").json()
    assert any(c["id"] == "ANONYMIZER" and c["customCategory"] is False for c in everything)
    custom = tenant.http.get("/urlCategories", params={"customOnly": "true"}).json()
    assert [c["id"] for c in custom] == ["CUSTOM_01"]
    assert custom[0]["urls"] == ["a.example", "b.example"]
    counts = tenant.http.get(
        "/urlCategories", params={"customOnly": "true", "includeOnlyUrlKeywordCounts": "true"}
    ).json()[0]
    assert "urls" not in counts
    assert counts["customUrlsCount"] == 2
    assert counts["urlsRetainingParentCategoryCount"] == 0
    assert "urlKeywordCounts" not in counts
    lite = tenant.http.get("/urlCategories/lite").json()
    assert {"id": "CUSTOM_01", "configuredName": NAME}.items() <= lite[-1].items()
    assert tenant.http.get("/urlCategories/CUSTOM_01").json() == created
    missing = tenant.http.get("/urlCategories/CUSTOM_99")
    assert missing.status_code == 404
    assert missing.json()["code"] == "RESOURCE_NOT_FOUND"


def test_add_and_remove_answer_the_whole_category(tenant: Tenant) -> None:
    """ADD_TO_LIST and REMOVE_FROM_LIST change only the URLs named and return the category."""
    create(tenant.http, urls=["keep.example"])
    added = change(tenant.http, "CUSTOM_01", "ADD_TO_LIST", ["a.example", "b.example", "a.example"])
    assert added.status_code == 200
    assert added.json()["urls"] == ["keep.example", "a.example", "b.example"]
    assert added.json()["configuredName"] == NAME
    removed = change(tenant.http, "CUSTOM_01", "REMOVE_FROM_LIST", ["a.example", "never.example"])
    assert removed.status_code == 200
    assert removed.json()["urls"] == ["keep.example", "b.example"]
    assert tenant.zia.staged_urls(NAME) == {"keep.example", "b.example"}


def test_incremental_changes_need_the_configured_name(tenant: Tenant) -> None:
    """An ADD_TO_LIST body without configuredName is refused and changes nothing."""
    create(tenant.http)
    response = tenant.http.put(
        "/urlCategories/CUSTOM_01", params={"action": "ADD_TO_LIST"}, json={"urls": ["a.example"]}
    )
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_INPUT_ARGUMENT"
    assert tenant.zia.staged_urls(NAME) == set()
    bad_action = change(tenant.http, "CUSTOM_01", "MERGE", ["a.example"])
    assert bad_action.status_code == 400


def test_full_replace_clears_omitted_lists_but_keeps_keywords(tenant: Tenant) -> None:
    """A PUT without action replaces the category: omitted URL lists are cleared, keywords kept."""
    create(tenant.http, urls=["a.example"])
    tenant.http.put(
        "/urlCategories/CUSTOM_01",
        json={"configuredName": NAME, "urls": ["a.example"], "keywords": ["phish"]},
    )
    replaced = tenant.http.put(
        "/urlCategories/CUSTOM_01", json={"configuredName": NAME, "description": "d"}
    )
    assert replaced.status_code == 200
    assert replaced.json()["urls"] == []
    assert replaced.json()["keywords"] == ["phish"]
    assert replaced.json()["description"] == "d"
    assert tenant.http.get("/urlCategories/urlQuota").json()["uniqueUrlsProvisioned"] == 0


def test_delete_removes_a_custom_category_only(tenant: Tenant) -> None:
    """DELETE answers 204 for a custom category and refuses a predefined one."""
    create(tenant.http, urls=["a.example"])
    deleted = tenant.http.delete("/urlCategories/CUSTOM_01")
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert tenant.http.get("/urlCategories/CUSTOM_01").status_code == 404
    assert tenant.zia.categories() == []
    predefined = tenant.http.delete("/urlCategories/ANONYMIZER")
    assert predefined.status_code == 400
    assert tenant.http.delete("/urlCategories/CUSTOM_01").status_code == 404


# -- quota and URL refusals ---------------------------------------------------------------------


def test_quota_counts_unique_urls_over_all_custom_categories(tenant: Tenant) -> None:
    """A URL in two custom categories counts once; removing it from one keeps it counted."""
    create(tenant.http, urls=["a.example", "b.example"])
    create(tenant.http, name="Other", urls=["b.example", "c.example"])
    quota = tenant.http.get("/urlCategories/urlQuota").json()
    assert quota == {"uniqueUrlsProvisioned": 3, "remainingUrlsQuota": 24_997}
    change(tenant.http, "CUSTOM_01", "REMOVE_FROM_LIST", ["b.example"])
    assert tenant.http.get("/urlCategories/urlQuota").json()["uniqueUrlsProvisioned"] == 3
    tenant.http.delete("/urlCategories/CUSTOM_02")
    assert tenant.http.get("/urlCategories/urlQuota").json()["uniqueUrlsProvisioned"] == 1


def test_exceeding_the_quota_refuses_the_whole_request(tenant: Tenant) -> None:
    """An ADD that would pass the quota is refused with ZIA's message and adds nothing."""
    tenant.zia.url_quota = 3
    create(tenant.http, urls=["a.example", "b.example"])
    refused = change(
        tenant.http, "CUSTOM_01", "ADD_TO_LIST", ["a.example", "c.example", "d.example"]
    )
    assert refused.status_code == 400
    assert refused.json() == {
        "code": "INVALID_INPUT_ARGUMENT",
        "message": "An organization can have a maximum of 3 custom URLs. "
        "Currently 2 are already provisioned for this organization.",
    }
    assert tenant.zia.staged_urls(NAME) == {"a.example", "b.example"}
    fits = change(tenant.http, "CUSTOM_01", "ADD_TO_LIST", ["a.example", "c.example"])
    assert fits.status_code == 200
    assert tenant.http.get("/urlCategories/urlQuota").json()["remainingUrlsQuota"] == 0
    too_big = tenant.http.post(
        "/urlCategories",
        json={"configuredName": "More", "superCategory": "USER_DEFINED", "urls": ["e.example"]},
    )
    assert too_big.status_code == 400


@pytest.mark.parametrize("bad", ["http://bad.example", "*.bad.example", "Bad.example", "localhost"])
def test_one_bad_url_refuses_the_whole_request(tenant: Tenant, bad: str) -> None:
    """One invalid entry refuses the batch with INVALID_INPUT_ARGUMENT naming it."""
    create(tenant.http)
    refused = change(tenant.http, "CUSTOM_01", "ADD_TO_LIST", ["good.example", bad, "ok.example"])
    assert refused.status_code == 400
    assert refused.json()["code"] == "INVALID_INPUT_ARGUMENT"
    assert bad in refused.json()["message"]
    assert tenant.zia.staged_urls(NAME) == set()


def test_invalid_urls_knob_refuses_listed_entries(tenant: Tenant) -> None:
    """Entries in invalid_urls are refused on ADD_TO_LIST although they look valid."""
    tenant.zia.invalid_urls.add("tenant-refuses.example")
    create(tenant.http)
    refused = change(
        tenant.http, "CUSTOM_01", "ADD_TO_LIST", ["a.example", "tenant-refuses.example"]
    )
    assert refused.status_code == 400
    assert "tenant-refuses.example" in refused.json()["message"]
    assert change(tenant.http, "CUSTOM_01", "ADD_TO_LIST", ["a.example"]).status_code == 200


# -- activation ---------------------------------------------------------------------------------


def test_changes_are_staged_until_activation(tenant: Tenant) -> None:
    """Active URLs change only on POST /status/activate; GET /status shows what is pending."""
    create(tenant.http, urls=["a.example"])
    assert tenant.http.get("/status").json() == {"status": "PENDING"}
    assert tenant.zia.active_urls(NAME) == set()
    assert tenant.http.post("/status/activate").json() == {"status": "ACTIVE"}
    assert tenant.zia.active_urls(NAME) == {"a.example"}
    change(tenant.http, "CUSTOM_01", "ADD_TO_LIST", ["b.example"])
    assert tenant.zia.active_urls(NAME) == {"a.example"}
    assert tenant.zia.staged_urls(NAME) == {"a.example", "b.example"}
    tenant.http.post("/status/activate")
    assert tenant.zia.active_urls(NAME) == {"a.example", "b.example"}
    assert tenant.http.get("/status").json() == {"status": "ACTIVE"}
    assert tenant.zia.activations == 2


# -- HTTP surface ---------------------------------------------------------------------------------


def test_oneapi_prefix_serves_the_same_tenant(tenant: Tenant) -> None:
    """/zia/api/v1 and /api/v1 address the same categories."""
    create(tenant.http, urls=["a.example"])
    headers = dict(tenant.http.headers)
    response = tenant.raw.get(f"{tenant.url}/zia/api/v1/urlCategories/CUSTOM_01", headers=headers)
    assert response.json()["urls"] == ["a.example"]
    assert response.headers["x-zscaler-mode"] == "read-write"


def test_bodies_must_be_json(tenant: Tenant) -> None:
    """A form body gets 415; malformed JSON gets 400 "Request body is invalid."."""
    form = tenant.http.post("/urlCategories", data={"configuredName": NAME})
    assert form.status_code == 415
    broken = tenant.http.post(
        "/urlCategories", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert (broken.status_code, broken.json()) == (400, {"message": "Request body is invalid."})


def test_unknown_paths_and_methods(tenant: Tenant) -> None:
    """An unknown endpoint is 404 and a known one with the wrong method is 405."""
    assert tenant.http.get("/firewallRules").status_code == 404
    assert tenant.http.post("/urlCategories/lite", json={}).status_code == 405
    assert tenant.raw.get(f"{tenant.url}/elsewhere").status_code == 401


def test_large_batches_are_fast(tenant: Tenant) -> None:
    """A 25,000-URL tenant takes an ADD and a REMOVE of 10,000 URLs in well under a second."""
    tenant.zia.url_quota = 40_000
    create(tenant.http, urls=[f"seed{n}.example" for n in range(25_000)])
    batch = [f"new{n}.example" for n in range(10_000)]
    started = time.perf_counter()
    added = change(tenant.http, "CUSTOM_01", "ADD_TO_LIST", batch)
    removed = change(tenant.http, "CUSTOM_01", "REMOVE_FROM_LIST", batch)
    elapsed = time.perf_counter() - started
    assert (added.status_code, removed.status_code) == (200, 200)
    assert len(added.json()["urls"]) == 35_000
    assert len(removed.json()["urls"]) == 25_000
    assert elapsed < 2.0


def test_concurrent_adds_all_land(tenant: Tenant) -> None:
    """Eight clients adding disjoint URLs at once lose nothing and the quota stays exact."""
    create(tenant.http)
    headers = dict(tenant.http.headers)
    base = str(tenant.http.base_url)
    failures: list[int] = []

    def push(worker: int) -> None:
        with httpx.Client(base_url=base, headers=headers, timeout=10) as http:
            for round_ in range(5):
                urls = [f"w{worker}-r{round_}-{n}.example" for n in range(50)]
                status = change(http, "CUSTOM_01", "ADD_TO_LIST", urls).status_code
                if status != 200:
                    failures.append(status)

    threads = [threading.Thread(target=push, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert failures == []
    assert len(tenant.zia.staged_urls(NAME)) == 8 * 5 * 50
    assert tenant.http.get("/urlCategories/urlQuota").json()["uniqueUrlsProvisioned"] == 2000
    assert len(tenant.zia.calls) == 1 + 8 * 5 + 1


# -- bearer auth ----------------------------------------------------------------------------------


def test_missing_invalid_and_expired_tokens_get_401(tenant: Tenant) -> None:
    """No token, an unknown token and an expired token are all answered 401."""
    url = f"{tenant.url}/api/v1/urlCategories/lite"
    assert tenant.raw.get(url).status_code == 401
    invalid = tenant.raw.get(url, headers={"Authorization": "Bearer forged"})
    assert invalid.status_code == 401
    assert "invalid_token" in invalid.headers["WWW-Authenticate"]
    assert tenant.http.get("/urlCategories/lite").status_code == 200
    tenant.idp.expire_tokens()
    assert tenant.http.get("/urlCategories/lite").status_code == 401
    assert tenant.zia.limit_violations() == []


def test_a_revoked_clients_token_gets_401(tenant: Tenant) -> None:
    """Revoking the client at the IdP makes the tenant refuse its token at once."""
    assert tenant.http.get("/status").status_code == 200
    tenant.idp.revoke("app")
    assert tenant.http.get("/status").status_code == 401


def test_a_token_for_another_scope_gets_401(tenant: Tenant) -> None:
    """A valid token whose scope names another org or role is not accepted by this tenant."""
    tenant.idp.add_client("stranger", "s", scope="zscloud.net::999::Other")
    token = tenant.token("stranger", "s", scope="zscloud.net::999::Other")
    response = tenant.raw.get(
        f"{tenant.url}/api/v1/status", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


def test_oneapi_tenant_checks_the_audience(tenant: Tenant) -> None:
    """A OneAPI tenant accepts tokens for its audience and refuses the others."""
    tenant.idp.add_client("one", "s1", audience=AUDIENCE)
    oneapi = ZiaEmulator(idp=tenant.idp, audience=AUDIENCE, enforce_limits=False)
    with EmulatorServer(oneapi) as server:
        good = tenant.token("one", "s1", audience=AUDIENCE)
        wrong = tenant.token(scope=SCOPE)  # a token without that audience
        url = f"{server.url}/zia/api/v1/urlCategories/urlQuota"
        assert tenant.raw.get(url, headers={"Authorization": f"Bearer {good}"}).status_code == 200
        assert tenant.raw.get(url, headers={"Authorization": f"Bearer {wrong}"}).status_code == 401


# -- legacy session -------------------------------------------------------------------------------


def login_body(
    api_key: str = API_KEY, password: str = "pa55word", *, at_ms: int | None = None
) -> dict[str, str]:
    now_ms = at_ms if at_ms is not None else int(time.time() * 1000)
    return {
        "apiKey": obfuscate_api_key(api_key, now_ms),
        "username": "api-admin@example.com",
        "password": password,
        "timestamp": str(now_ms),
    }


def test_server_side_obfuscation_matches_the_documented_algorithm() -> None:
    """The tenant's recomputation agrees with a worked example and with the product's client."""
    assert expected_obfuscation("abcdefghijklmnop", "1700000123456") == "bcdefgcidjek"
    for now_ms in range(1_700_000_000_000, 1_700_000_000_000 + 999_999, 7_919):
        assert expected_obfuscation(API_KEY, str(now_ms)) == obfuscate_api_key(API_KEY, now_ms)


def test_legacy_login_sets_a_session_cookie(tenant: Tenant) -> None:
    """A correct obfuscated-key login answers ADMIN_LOGIN and a JSESSIONID that authenticates."""
    with httpx.Client(base_url=f"{tenant.url}/api/v1") as http:
        response = http.post("/authenticatedSession", json=login_body())
        assert response.status_code == 200
        assert response.json()["authType"] == "ADMIN_LOGIN"
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith("JSESSIONID=") and "HttpOnly" in cookie
        session = response.cookies["JSESSIONID"]
        headers = {"Cookie": f"JSESSIONID={session}"}
        assert http.get("/urlCategories/urlQuota", headers=headers).status_code == 200
        state = http.get("/authenticatedSession", headers=headers).json()
        assert state["authType"] == "ADMIN_LOGIN"


@pytest.mark.parametrize(
    "body",
    [
        login_body(password="wrong"),
        login_body(api_key="WRONGKEY00000000"),
        login_body(at_ms=int(time.time() * 1000) - 3 * 3600 * 1000),
        {**login_body(), "timestamp": str(int(time.time() * 1000) - 1000)},
    ],
    ids=["password", "api-key", "stale-timestamp", "timestamp-not-the-obfuscated-one"],
)
def test_legacy_login_refusals(tenant: Tenant, body: dict) -> None:
    """A wrong password, key, stale or mismatched timestamp answers INVALID_USERNAME_OR_PASSWORD."""
    response = tenant.raw.post(f"{tenant.url}/api/v1/authenticatedSession", json=body)
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_USERNAME_OR_PASSWORD"
    assert "set-cookie" not in response.headers


def test_idle_session_gets_session_not_valid(tenant: Tenant) -> None:
    """A session idle longer than session_idle is refused 401 SESSION_NOT_VALID; GET
    /authenticatedSession still answers 200, without authType."""
    tenant.zia.session_idle = 0.3
    with httpx.Client(base_url=f"{tenant.url}/api/v1") as http:
        session = http.post("/authenticatedSession", json=login_body()).cookies["JSESSIONID"]
        headers = {"Cookie": f"JSESSIONID={session}"}
        for _ in range(3):  # each call restarts the idle timer
            time.sleep(0.15)
            assert http.get("/status", headers=headers).status_code == 200
        time.sleep(0.35)
        refused = http.get("/status", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["code"] == "SESSION_NOT_VALID"
        state = http.get("/authenticatedSession", headers=headers)
        assert state.status_code == 200 and "authType" not in state.json()


def test_logout_ends_the_session_and_activates(tenant: Tenant) -> None:
    """DELETE /authenticatedSession activates staged changes and ends the session."""
    with httpx.Client(base_url=f"{tenant.url}/api/v1") as http:
        session = http.post("/authenticatedSession", json=login_body()).cookies["JSESSIONID"]
        headers = {"Cookie": f"JSESSIONID={session}"}
        body = {"configuredName": NAME, "superCategory": "USER_DEFINED", "urls": ["a.example"]}
        assert http.post("/urlCategories", json=body, headers=headers).status_code == 200
        assert http.delete("/authenticatedSession", headers=headers).status_code == 204
        assert tenant.zia.active_urls(NAME) == {"a.example"}
        assert http.get("/status", headers=headers).status_code == 401


def test_the_product_legacy_session_logs_in(tenant: Tenant) -> None:
    """threatshare's LegacySession logs in to the tenant and its cookie is accepted."""
    with httpx.Client(base_url=f"{tenant.url}/api/v1") as http:
        session = LegacySession(
            http,
            api_key=SecretStr(API_KEY),
            username="api-admin@example.com",
            password=SecretStr("pa55word"),
        )
        response = http.get("/urlCategories/lite", headers=session.headers())
        assert response.status_code == 200
        assert session.logins == 1
        tenant.zia.expire_sessions()
        assert http.get("/status", headers=session.headers()).status_code == 401


# -- failure knobs --------------------------------------------------------------------------------

FAILURES = [
    ("409", 409, "EDIT_LOCK_NOT_AVAILABLE", {}),
    ("409_barrier", 409, "UNEXPECTED_ERROR", {}),
    ("412", 412, "UNEXPECTED_ERROR", {}),
    ("400_field", 400, "INVALID_INPUT_ARGUMENT", {}),
    ("503", 503, None, {}),
    ("500", 500, "UNEXPECTED_ERROR", {}),
    ("429", 429, None, {"retry-after": "1"}),
    ("403_readonly", 403, "STATE_READONLY", {"x-zscaler-mode": "read-only"}),
    ("403", 403, "SCOPE_LIMITED", {}),
    ("401", 401, "SESSION_NOT_VALID", {}),
]


@pytest.mark.parametrize(("kind", "status", "code", "headers"), FAILURES)
def test_each_failure_kind(
    tenant: Tenant, kind: str, status: int, code: str | None, headers: dict[str, str]
) -> None:
    """fail_next answers ZIA's status, code and headers for the kind, then the next call works."""
    create(tenant.http)
    tenant.zia.fail_next(kind)
    failed = change(tenant.http, "CUSTOM_01", "ADD_TO_LIST", ["a.example"])
    assert failed.status_code == status
    assert failed.json().get("code") == code
    assert headers.items() <= failed.headers.items()
    assert tenant.zia.staged_urls(NAME) == set()
    assert change(tenant.http, "CUSTOM_01", "ADD_TO_LIST", ["a.example"]).status_code == 200


def test_429_bodies_carry_retry_after(tenant: Tenant) -> None:
    """ "429" sends the header and the body; "429_body" only the body's "N seconds"."""
    tenant.zia.injected_retry_after = 0
    tenant.zia.fail_next("429")
    tenant.zia.fail_next("429_body")
    full = tenant.http.get("/status")
    body_only = tenant.http.get("/status")
    assert full.headers["Retry-After"] == "0"
    assert full.json()["Retry-After"] == "0 seconds"
    assert "retry-after" not in body_only.headers
    assert body_only.json() == {
        "message": "Rate Limit (1/SECOND) exceeded",
        "Retry-After": "0 seconds",
    }
    assert tenant.zia.count_429 == 2


def test_readonly_spares_reads(tenant: Tenant) -> None:
    """During read-only maintenance GETs still work and the next write gets the 403."""
    tenant.zia.fail_next("403_readonly")
    assert tenant.http.get("/urlCategories/urlQuota").status_code == 200
    assert tenant.http.post("/status/activate").status_code == 403


def test_drop_performs_the_call_then_cuts_the_connection(tenant: Tenant) -> None:
    """A dropped answer leaves the client without a response although the change was made."""
    create(tenant.http)
    tenant.zia.fail_next("drop")
    with pytest.raises(httpx.TransportError):
        change(tenant.http, "CUSTOM_01", "ADD_TO_LIST", ["a.example"])
    assert tenant.zia.staged_urls(NAME) == {"a.example"}


def test_count_and_path_select_the_calls_that_fail(tenant: Tenant) -> None:
    """A failure for a path spares other paths and lasts for ``count`` matching calls."""
    tenant.zia.fail_next("503", 2, path="/status/activate")
    assert tenant.http.get("/urlCategories/urlQuota").status_code == 200
    statuses = [tenant.http.post("/status/activate").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    tenant.zia.fail_next("500", path="/urlCategories/{id}")
    create(tenant.http)
    assert tenant.http.get("/urlCategories/CUSTOM_01").status_code == 500
    with pytest.raises(ValueError):
        tenant.zia.fail_next("418")


def test_random_temporary_failures_are_seeded(tenant: Tenant) -> None:
    """temporary_failure_rate fails about that share of calls, identically for equal seeds."""

    def run(seed: int) -> list[int]:
        tenant.zia.seed = seed
        tenant.zia.temporary_failure_rate = 0.5
        return [tenant.http.post("/status/activate").status_code for _ in range(20)]

    first, again = run(7), run(7)
    assert first == again
    failed = [s for s in first if s != 200]
    assert 3 <= len(failed) <= 17
    assert set(failed) <= {409, 429, 500, 503, 403}
    tenant.zia.temporary_failure_rate = 0.0
    assert tenant.http.post("/status/activate").status_code == 200


def test_latency_delays_every_answer(tenant: Tenant) -> None:
    """The latency knob delays answers by that many seconds."""
    tenant.zia.latency = 0.2
    started = time.perf_counter()
    assert tenant.http.get("/status").status_code == 200
    assert time.perf_counter() - started >= 0.2


# -- what the lifecycle needs (docs/design.md#expiry) ----------------------------------------------


def test_get_of_one_category_has_its_urls_and_description(tenant: Tenant) -> None:
    """GET /urlCategories/{id} answers the category's URLs and description."""
    body = {
        "configuredName": NAME,
        "superCategory": "USER_DEFINED",
        "urls": ["a.example", "b.example/x"],
        "description": "Managed by threatshare, instance urls",
    }
    created = tenant.http.post("/urlCategories", json=body).json()
    got = tenant.http.get(f"/urlCategories/{created['id']}").json()
    assert got["urls"] == ["a.example", "b.example/x"]
    assert got["description"] == "Managed by threatshare, instance urls"


def test_a_tenant_may_refuse_empty_creation(tenant: Tenant) -> None:
    """With refuse_empty_categories a POST without URLs or keywords is a 400 and creates
    nothing; with URLs it creates the category holding them."""
    tenant.zia.refuse_empty_categories = True
    refused = tenant.http.post(
        "/urlCategories", json={"configuredName": NAME, "superCategory": "USER_DEFINED"}
    )
    assert refused.status_code == 400
    assert refused.json()["code"] == "INVALID_INPUT_ARGUMENT"
    assert tenant.zia.categories() == []
    assert create(tenant.http, urls=["first.example"])["urls"] == ["first.example"]


def test_admin_categories_share_the_quota_and_edits_bypass_the_api(tenant: Tenant) -> None:
    """A category an admin makes by hand counts in the quota; hand edits and deletion show
    in the API but are not API calls."""
    tenant.zia.admin_create("Admin Blocks", ["admin.example", "shared.example"], "by hand")
    create(tenant.http, urls=["shared.example", "ours.example"])
    assert tenant.zia.quota() == {"uniqueUrlsProvisioned": 3, "remainingUrlsQuota": 24_997}
    tenant.zia.admin_edit(NAME, remove=["ours.example"], add=["hand.example"])
    assert tenant.zia.staged_urls(NAME) == {"shared.example", "hand.example"}
    calls = len(tenant.zia.calls)
    tenant.zia.admin_delete("Admin Blocks")
    assert len(tenant.zia.calls) == calls
    assert [c["configuredName"] for c in tenant.zia.categories()] == [NAME]
    with pytest.raises(KeyError):
        tenant.zia.admin_delete("Admin Blocks")


def test_edit_lock_carries_no_message(tenant: Tenant) -> None:
    """A 409 edit lock is EDIT_LOCK_NOT_AVAILABLE with no message, as ZIA records it."""
    create(tenant.http)
    tenant.zia.fail_next("409")
    failed = change(tenant.http, "CUSTOM_01", "ADD_TO_LIST", ["a.example"])
    assert failed.json() == {"code": "EDIT_LOCK_NOT_AVAILABLE"}


def test_500_with_an_empty_body(tenant: Tenant) -> None:
    """The "500_empty" kind answers 500 with no body at all."""
    create(tenant.http)
    tenant.zia.fail_next("500_empty")
    failed = change(tenant.http, "CUSTOM_01", "ADD_TO_LIST", ["a.example"])
    assert (failed.status_code, failed.content) == (500, b"")


@pytest.mark.parametrize("kind", ["503", "500", "429", "409"])
def test_every_answer_carries_the_gateway_window(tenant: Tenant, kind: str) -> None:
    """Every answer, failures included, carries x-ratelimit-limit/-remaining/-reset."""
    ok = tenant.http.get("/urlCategories/urlQuota")
    tenant.zia.fail_next(kind)
    failed = tenant.http.get("/urlCategories/urlQuota")
    assert failed.status_code == int(kind)
    for response in (ok, failed):
        assert response.headers["x-ratelimit-limit"] == "5000, 5000;w=60"
        assert 1 <= int(response.headers["x-ratelimit-reset"]) <= 60
    remaining = int(ok.headers["x-ratelimit-remaining"])
    assert int(failed.headers["x-ratelimit-remaining"]) in (remaining - 1, 4999)


def test_the_oneapi_gateway_refuses_a_bad_token_as_recorded(tenant: Tenant) -> None:
    """A bad bearer token on the OneAPI prefix gets the gateway's {"detail": "unauthorized"}."""
    headers = {"Authorization": "Bearer not-a-token"}
    refused = tenant.raw.get(f"{tenant.url}/zia/api/v1/urlCategories/urlQuota", headers=headers)
    assert refused.status_code == 401
    assert refused.json() == {"detail": "unauthorized"}
