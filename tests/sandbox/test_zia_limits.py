"""The emulated tenant's rate limits: strict sliding windows, 429 answers, the violation check."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx2 as httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from threatshare.sandbox.idp import IdpEmulator
from threatshare.sandbox.server import EmulatorServer
from threatshare.sandbox.zia import ZiaEmulator
from threatshare.sandbox.zia_limits import Call, SlidingWindows, limits_for, violations

SCOPE = "zscloud.net::1::Role"
PUT = "PUT /urlCategories/{id}"


def test_a_client_spacing_calls_exactly_is_never_refused() -> None:
    """400 PUTs exactly one second apart fit both 1/SECOND and 400/HOUR."""
    windows = SlidingWindows()
    assert all(windows.admit(PUT, float(t)) is None for t in range(400))


def test_the_hourly_ceiling_refuses_the_next_call() -> None:
    """After 400 PUTs within an hour, the 401st is refused until the first leaves the window."""
    windows = SlidingWindows()
    for t in range(400):
        assert windows.admit(PUT, float(t)) is None
    refusal = windows.admit(PUT, 400.0)
    assert refusal is not None
    assert refusal.limit.label == "400/HOUR"
    assert refusal.retry_after == 3200
    assert refusal.body == {
        "message": "Rate Limit (400/HOUR) exceeded",
        "Retry-After": "3200 seconds",
    }
    assert windows.admit(PUT, 3600.0) is None


def test_the_burst_limit_is_strict() -> None:
    """A second PUT within the same second is refused with a one-second wait."""
    windows = SlidingWindows()
    assert windows.admit(PUT, 10.0) is None
    refusal = windows.admit(PUT, 10.999)
    assert refusal is not None
    assert (refusal.limit.label, refusal.retry_after) == ("1/SECOND", 1)
    assert windows.admit(PUT, 11.0) is None


def test_refused_calls_count_toward_nothing() -> None:
    """Refused calls do not extend the window: the next slot opens as if they never came."""
    windows = SlidingWindows()
    assert windows.admit("GET /status", 0.0) is None
    assert windows.admit("GET /status", 0.1) is None
    for t in (0.5, 0.6, 0.9):
        assert windows.admit("GET /status", t) is not None
    assert windows.admit("GET /status", 1.05) is None


def test_buckets_are_separate() -> None:
    """Each method and endpoint has its own allowance."""
    windows = SlidingWindows()
    assert windows.admit(PUT, 0.0) is None
    assert windows.admit("POST /urlCategories", 0.0) is None
    assert windows.admit("GET /urlCategories/{id}", 0.0) is None
    assert windows.admit(PUT, 0.5) is not None


def test_time_scale_shrinks_minute_and_hour_windows_only() -> None:
    """time_scale divides the minute and hour windows; a second stays a second."""
    activate, delete = limits_for("POST /status/activate"), limits_for("DELETE /urlCategories/{id}")
    assert [(lim.count, lim.window(60)) for lim in activate] == [(10, 1.0), (40, 60.0)]
    assert [(lim.count, lim.window(60)) for lim in delete] == [(1, 1.0), (4, 60.0)]
    assert [lim.window(60) for lim in limits_for("GET /status")] == [1.0, 60.0]


def test_violations_rechecks_the_log() -> None:
    """violations() flags answered calls beyond a limit and ignores 401 and 429 answers."""
    calls = [
        Call("PUT", "/api/v1/urlCategories/CUSTOM_01", 200, 0.0, PUT),
        Call("PUT", "/api/v1/urlCategories/CUSTOM_01", 429, 0.2, PUT),
        Call("PUT", "/api/v1/urlCategories/CUSTOM_01", 401, 0.3, PUT),
        Call("PUT", "/api/v1/urlCategories/CUSTOM_01", 200, 1.0, PUT),
    ]
    assert violations(calls) == []
    calls.append(Call("PUT", "/api/v1/urlCategories/CUSTOM_01", 400, 1.5, PUT))
    found = violations(calls)
    assert len(found) == 1 and "1/SECOND" in found[0]


@settings(max_examples=200, deadline=None)
@given(
    bucket=st.sampled_from(["DELETE /urlCategories/{id}", "POST /status/activate", PUT]),
    gaps=st.lists(st.floats(min_value=0.0, max_value=0.5), max_size=80),
)
def test_admission_is_exactly_the_documented_limits(bucket: str, gaps: list[float]) -> None:
    """Whatever the arrivals, admitted calls never break a limit, and every refused call would
    have broken one had it been admitted."""
    windows = SlidingWindows(time_scale=60)
    admitted: list[Call] = []
    at = 0.0
    for gap in gaps:
        at += gap
        call = Call("X", "/x", 200, at, bucket)
        if windows.admit(bucket, at) is None:
            admitted.append(call)
        else:
            assert violations([*admitted, call], time_scale=60) != []
    assert violations(admitted, time_scale=60) == []


@pytest.fixture
def idp() -> IdpEmulator:
    emulator = IdpEmulator()
    emulator.add_client("app", "secret", scope=SCOPE)
    return emulator


def open_tenant(idp: IdpEmulator, zia: ZiaEmulator) -> Iterator[httpx.Client]:
    with EmulatorServer(idp) as idp_server, EmulatorServer(zia) as zia_server:
        token = httpx.post(
            f"{idp_server.url}/oauth2/v1/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "app",
                "client_secret": "secret",
                "scope": SCOPE,
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"{zia_server.url}/api/v1", headers=headers, timeout=5) as c:
            yield c


@pytest.fixture
def zia(idp: IdpEmulator) -> ZiaEmulator:
    return ZiaEmulator(idp=idp, scope=SCOPE, time_scale=600)


@pytest.fixture
def http(idp: IdpEmulator, zia: ZiaEmulator) -> Iterator[httpx.Client]:
    yield from open_tenant(idp, zia)


def create(http: httpx.Client, name: str) -> str:
    body = {"configuredName": name, "superCategory": "USER_DEFINED", "urls": []}
    response = http.post("/urlCategories", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def test_get_burst_answers_429_with_header_and_body(zia: ZiaEmulator, http: httpx.Client) -> None:
    """A third GET within a second gets 429, Retry-After header and ZIA's body."""
    statuses = [http.get("/urlCategories/urlQuota").status_code for _ in range(2)]
    refused = http.get("/urlCategories/urlQuota")
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json() == {
        "message": "Rate Limit (2/SECOND) exceeded",
        "Retry-After": "1 seconds",
    }
    assert zia.count_429 == 1
    assert zia.limit_violations() == []
    assert http.get("/status").status_code == 200  # another endpoint, another allowance


def test_put_allows_one_per_second(zia: ZiaEmulator, http: httpx.Client) -> None:
    """Two PUTs to a category within a second: the second is refused; after a second it passes."""
    category = create(http, "Limits")
    body = {"configuredName": "Limits", "urls": ["a.example"]}
    first = http.put(f"/urlCategories/{category}", params={"action": "ADD_TO_LIST"}, json=body)
    second = http.put(f"/urlCategories/{category}", params={"action": "ADD_TO_LIST"}, json=body)
    assert (first.status_code, second.status_code) == (200, 429)
    assert second.json()["message"] == "Rate Limit (1/SECOND) exceeded"
    time.sleep(1.0)
    third = http.put(f"/urlCategories/{category}", params={"action": "ADD_TO_LIST"}, json=body)
    assert third.status_code == 200
    assert zia.limit_violations() == []


def test_delete_hourly_ceiling_with_time_scale(zia: ZiaEmulator, http: httpx.Client) -> None:
    """DELETE allows 1/min and 4/hour: with time_scale=600 the fifth spaced delete is refused."""
    zia.enforce_limits = False  # setting up: five creations at once
    ids = [create(http, f"Doomed {n}") for n in range(5)]
    zia.enforce_limits = True
    answers = []
    for category in ids:
        answers.append(http.delete(f"/urlCategories/{category}"))
        time.sleep(0.12)  # more than the scaled minute (0.1 s)
    assert [a.status_code for a in answers] == [204, 204, 204, 204, 429]
    assert answers[-1].json()["message"] == "Rate Limit (4/HOUR) exceeded"
    # Only the unenforced set-up shows up as a violation, never an answered DELETE.
    assert all(v.startswith("POST /urlCategories:") for v in zia.limit_violations())


def test_activation_burst_with_time_scale(idp: IdpEmulator) -> None:
    """Activation allows 10 a minute: the 11th within a (scaled) minute gets 429."""
    zia = ZiaEmulator(idp=idp, scope=SCOPE, time_scale=60)  # a minute is 1 s, an hour 60 s
    for http in open_tenant(idp, zia):
        burst = [http.post("/status/activate") for _ in range(11)]
        assert [r.status_code for r in burst] == [200] * 10 + [429]
        assert burst[-1].json()["message"] == "Rate Limit (10/MINUTE) exceeded"
        assert zia.activations == 10
    assert zia.limit_violations() == []


def test_activation_hourly_ceiling() -> None:
    """40 activations spread to respect 10/MINUTE exhaust 40/HOUR; the 41st waits for the hour."""
    windows = SlidingWindows()
    bucket = "POST /status/activate"
    assert all(windows.admit(bucket, 6.0 * n) is None for n in range(40))
    refusal = windows.admit(bucket, 240.0)
    assert refusal is not None
    assert (refusal.limit.label, refusal.retry_after) == ("40/HOUR", 3360)


def test_unenforced_limits_are_reported_as_violations(idp: IdpEmulator) -> None:
    """With enforce_limits off the calls pass, and limit_violations names what broke the rules."""
    zia = ZiaEmulator(idp=idp, scope=SCOPE, enforce_limits=False)
    for http in open_tenant(idp, zia):
        statuses = [http.get("/status").status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
    found = zia.limit_violations()
    assert len(found) == 1 and found[0].startswith("GET /status") and "2/SECOND" in found[0]


def test_unauthenticated_and_refused_calls_are_not_counted(
    zia: ZiaEmulator, http: httpx.Client
) -> None:
    """401 and injected 429 answers use up no allowance, while an injected 500 does."""
    category = create(http, "Counted")
    body = {"configuredName": "Counted", "urls": ["a.example"]}
    url = f"/urlCategories/{category}"
    assert http.put(url, json=body, headers={"Authorization": "Bearer nope"}).status_code == 401
    zia.fail_next("429")
    assert http.put(url, params={"action": "ADD_TO_LIST"}, json=body).status_code == 429
    assert http.put(url, params={"action": "ADD_TO_LIST"}, json=body).status_code == 200
    time.sleep(1.0)
    zia.fail_next("500")
    assert http.put(url, params={"action": "ADD_TO_LIST"}, json=body).status_code == 500
    assert http.put(url, params={"action": "ADD_TO_LIST"}, json=body).status_code == 429
    assert zia.limit_violations() == []


def test_recorded_history_spends_the_hourly_budget(idp: IdpEmulator) -> None:
    """40 activations recorded as made in the last hour refuse the next one until the oldest
    leaves the hour, and count as answered calls that broke no limit."""
    zia = ZiaEmulator(idp=idp, scope=SCOPE)
    zia.record_history("POST /status/activate", [10.0 + 90.0 * n for n in range(40)])
    for http in open_tenant(idp, zia):
        refused = http.post("/status/activate")
        assert refused.status_code == 429
        assert refused.json()["message"] == "Rate Limit (40/HOUR) exceeded"
        # The oldest was made 3,520 s ago: it leaves the hour in 80 s.
        assert 75 <= int(refused.headers["Retry-After"]) <= 80
    assert zia.activations == 0
    assert len([c for c in zia.calls if c.status == 200]) == 40
    assert zia.limit_violations() == []


def test_history_that_breaks_a_limit_or_comes_late_is_refused(idp: IdpEmulator) -> None:
    """History beyond a documented limit raises ValueError; history after a call, RuntimeError."""
    zia = ZiaEmulator(idp=idp, scope=SCOPE)
    with pytest.raises(ValueError, match="exceed"):
        zia.record_history("POST /status/activate", [2.0 * n for n in range(11)])
    fresh = ZiaEmulator(idp=idp, scope=SCOPE)
    for http in open_tenant(idp, fresh):
        assert http.get("/status").status_code == 200
    with pytest.raises(RuntimeError, match="before the first call"):
        fresh.record_history("POST /status/activate", [60.0])
