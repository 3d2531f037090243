"""The OAuth2 IdP emulator: client authentication, scope, audience, expiry, rotation, revocation."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx2 as httpx
import pytest
from pydantic import SecretStr

from threatshare.auth import ClientCredentials
from threatshare.errors import AuthError
from threatshare.sandbox.idp import IdpEmulator
from threatshare.sandbox.server import EmulatorServer

SCOPE = "zscloud.net::3173833::ThreatShare"
AUDIENCE = "https://api.zscaler.com"


@pytest.fixture
def idp() -> IdpEmulator:
    emulator = IdpEmulator(token_lifetime=600)
    emulator.add_client("zia-app", "zia-secret", scope=SCOPE)
    emulator.add_client("oneapi-app", "oneapi-secret", audience=AUDIENCE)
    return emulator


@pytest.fixture
def server(idp: IdpEmulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(idp) as running:
        yield running


@pytest.fixture
def http(server: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5) as client:
        yield client


def post_token(http: httpx.Client, **form: str) -> httpx.Response:
    return http.post("/oauth2/v1/token", data={"grant_type": "client_credentials", **form})


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def test_client_secret_post_issues_a_bearer_token(idp: IdpEmulator, http: httpx.Client) -> None:
    """Credentials in the form body get a Bearer token whose claims the IdP can validate."""
    response = post_token(http, client_id="zia-app", client_secret="zia-secret", scope=SCOPE)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert response.headers["Cache-Control"] == "no-store"
    claims = idp.validate(body["access_token"])
    assert claims is not None
    assert (claims["client_id"], claims["scope"], claims["aud"]) == ("zia-app", SCOPE, None)


def test_client_secret_basic_issues_a_token(idp: IdpEmulator, http: httpx.Client) -> None:
    """HTTP Basic credentials are accepted as well as body credentials."""
    response = http.post(
        "/oauth2/v1/token",
        data={"grant_type": "client_credentials", "scope": SCOPE},
        headers=basic("zia-app", "zia-secret"),
    )
    assert response.status_code == 200
    assert idp.validate(response.json()["access_token"]) is not None


@pytest.mark.parametrize("method", ["client_secret_post", "client_secret_basic"])
def test_the_product_credential_gets_tokens_by_both_methods(
    server: EmulatorServer, idp: IdpEmulator, method: str
) -> None:
    """threatshare's ClientCredentials obtains a valid token with either auth method."""
    credential = ClientCredentials(
        token_url=f"{server.url}/oauth2/v1/token",
        client_id="zia-app",
        client_secret=SecretStr("zia-secret"),
        error_code="zia_auth",
        what="ZIA token",
        auth_method=method,
        scope=SCOPE,
    )
    try:
        token = credential.headers()["Authorization"].removeprefix("Bearer ")
    finally:
        credential.close()
    assert idp.validate(token) is not None
    assert idp.token_requests == 1


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [("zia-app", "wrong"), ("nobody", "zia-secret"), ("", "")],
)
def test_bad_credentials_are_invalid_client(
    http: httpx.Client, client_id: str, secret: str
) -> None:
    """An unknown client, a wrong secret or no credentials at all answer 401 invalid_client."""
    response = post_token(http, client_id=client_id, client_secret=secret, scope=SCOPE)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "wrong" not in response.text


def test_bad_basic_credentials_get_a_challenge(http: httpx.Client) -> None:
    """A wrong secret sent by HTTP Basic answers 401 with a WWW-Authenticate challenge."""
    response = http.post(
        "/oauth2/v1/token",
        data={"grant_type": "client_credentials", "scope": SCOPE},
        headers=basic("zia-app", "nope"),
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_two_authentication_methods_at_once_are_refused(http: httpx.Client) -> None:
    """Basic credentials plus a secret in the body is an invalid_request (RFC 6749 §2.3)."""
    response = http.post(
        "/oauth2/v1/token",
        data={"grant_type": "client_credentials", "client_secret": "zia-secret", "scope": SCOPE},
        headers=basic("zia-app", "zia-secret"),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({}, "invalid_request"),
        ({"grant_type": "password"}, "unsupported_grant_type"),
    ],
)
def test_grant_type_is_checked(http: httpx.Client, form: dict[str, str], error: str) -> None:
    """Only grant_type=client_credentials is served; a missing one is an invalid_request."""
    creds = {"client_id": "zia-app", "client_secret": "zia-secret", "scope": SCOPE}
    response = http.post("/oauth2/v1/token", data={**creds, **form})
    assert response.status_code == 400
    assert response.json()["error"] == error


def test_a_json_body_is_refused(http: httpx.Client) -> None:
    """The token request must be form-encoded; JSON is an invalid_request."""
    response = http.post(
        "/oauth2/v1/token",
        json={"grant_type": "client_credentials", "client_id": "zia-app"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("scope", [None, "zscloud.net::3173833::Other", f"{SCOPE} admin"])
def test_scope_is_checked(http: httpx.Client, scope: str | None) -> None:
    """A client restricted to a scope must ask for it, and for nothing beyond it."""
    form = {"client_id": "zia-app", "client_secret": "zia-secret"}
    if scope is not None:
        form["scope"] = scope
    response = post_token(http, **form)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_audience_is_checked(idp: IdpEmulator, http: httpx.Client) -> None:
    """A client bound to an audience gets a token only when it asks for that audience."""
    creds = {"client_id": "oneapi-app", "client_secret": "oneapi-secret"}
    assert post_token(http, **creds).json()["error"] == "invalid_request"
    wrong = post_token(http, **creds, audience="https://elsewhere.example")
    assert wrong.status_code == 400
    good = post_token(http, **creds, audience=AUDIENCE)
    assert good.status_code == 200
    claims = idp.validate(good.json()["access_token"])
    assert claims is not None and claims["aud"] == AUDIENCE


def test_expire_tokens_invalidates_issued_tokens(idp: IdpEmulator, http: httpx.Client) -> None:
    """After expire_tokens every earlier token fails validation; a new one is valid."""
    creds = {"client_id": "zia-app", "client_secret": "zia-secret", "scope": SCOPE}
    old = post_token(http, **creds).json()["access_token"]
    idp.expire_tokens()
    assert idp.validate(old) is None
    new = post_token(http, **creds).json()["access_token"]
    assert idp.validate(new) is not None


def test_tokens_expire_after_their_lifetime(http: httpx.Client, idp: IdpEmulator) -> None:
    """A token issued with a zero lifetime is already expired."""
    idp.token_lifetime = 0
    creds = {"client_id": "zia-app", "client_secret": "zia-secret", "scope": SCOPE}
    body = post_token(http, **creds).json()
    assert body["expires_in"] == 0
    assert idp.validate(body["access_token"]) is None


def test_rotate_secret_refuses_the_old_secret(idp: IdpEmulator, http: httpx.Client) -> None:
    """After a rotation the old secret is invalid_client, the new one works, and tokens issued
    before the rotation stay valid."""
    before = post_token(http, client_id="zia-app", client_secret="zia-secret", scope=SCOPE)
    idp.rotate_secret("zia-app", "fresh-secret")
    old = post_token(http, client_id="zia-app", client_secret="zia-secret", scope=SCOPE)
    assert old.status_code == 401
    new = post_token(http, client_id="zia-app", client_secret="fresh-secret", scope=SCOPE)
    assert new.status_code == 200
    assert idp.validate(before.json()["access_token"]) is not None


def test_revoke_refuses_the_client_and_kills_its_tokens(
    idp: IdpEmulator, http: httpx.Client
) -> None:
    """A revoked client gets invalid_client and its issued tokens stop validating."""
    token = post_token(http, client_id="zia-app", client_secret="zia-secret", scope=SCOPE)
    other = post_token(
        http, client_id="oneapi-app", client_secret="oneapi-secret", audience=AUDIENCE
    )
    idp.revoke("zia-app")
    refused = post_token(http, client_id="zia-app", client_secret="zia-secret", scope=SCOPE)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"
    assert idp.validate(token.json()["access_token"]) is None
    assert idp.validate(other.json()["access_token"]) is not None


def test_revoked_client_fails_in_the_product_as_an_auth_error(
    server: EmulatorServer, idp: IdpEmulator
) -> None:
    """threatshare's credential turns the revoked client's 401 into a permanent AuthError."""
    idp.revoke("zia-app")
    credential = ClientCredentials(
        token_url=f"{server.url}/oauth2/v1/token",
        client_id="zia-app",
        client_secret=SecretStr("zia-secret"),
        error_code="zia_auth",
        what="ZIA token",
        scope=SCOPE,
    )
    with pytest.raises(AuthError) as caught:
        credential.headers()
    credential.close()
    assert "invalid_client" in caught.value.message
    assert "zia-secret" not in str(caught.value)


def test_unknown_tokens_do_not_validate(idp: IdpEmulator) -> None:
    """A token the IdP never issued is not valid."""
    assert idp.validate("made-up") is None


def test_token_requests_counts_every_request(idp: IdpEmulator, http: httpx.Client) -> None:
    """token_requests counts accepted and refused token requests alike."""
    post_token(http, client_id="zia-app", client_secret="zia-secret", scope=SCOPE)
    post_token(http, client_id="zia-app", client_secret="bad", scope=SCOPE)
    assert idp.token_requests == 2


def test_other_paths_and_methods_are_refused(http: httpx.Client) -> None:
    """Only POST to a path ending in /token is served."""
    assert http.post("/oauth2/v1/authorize").status_code == 404
    assert http.get("/oauth2/v1/token").status_code == 405
    ok = http.post(
        "/custom/prefix/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "zia-app",
            "client_secret": "zia-secret",
            "scope": SCOPE,
        },
    )
    assert ok.status_code == 200


@pytest.mark.parametrize(("kind", "status"), [("429", 429), ("500", 500), ("503", 503)])
def test_injected_failures_precede_a_success(
    idp: IdpEmulator, http: httpx.Client, kind: str, status: int
) -> None:
    """fail_next answers the next request with the failure, then the IdP serves normally."""
    idp.fail_next(kind)
    creds = {"client_id": "zia-app", "client_secret": "zia-secret", "scope": SCOPE}
    failed = post_token(http, **creds)
    assert failed.status_code == status
    if kind == "429":
        assert failed.headers["Retry-After"] == "1"
    assert post_token(http, **creds).status_code == 200


def test_injected_html_and_drop(idp: IdpEmulator, http: httpx.Client) -> None:
    """ "html" answers a non-JSON proxy page; "drop" cuts the connection mid-response."""
    idp.fail_next("html")
    idp.fail_next("drop")
    creds = {"client_id": "zia-app", "client_secret": "zia-secret", "scope": SCOPE}
    page = post_token(http, **creds)
    assert page.status_code == 502
    assert page.headers["Content-Type"] == "text/html"
    with pytest.raises(httpx.TransportError):
        post_token(http, **creds)
    assert post_token(http, **creds).status_code == 200
    with pytest.raises(ValueError):
        idp.fail_next("418")
