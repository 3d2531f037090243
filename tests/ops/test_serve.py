"""`serve --listen` and `settings.listen`: addresses checked with a clear error, the endpoint
inside `threatshare run`, and a page that never lets upstream text become markup
(docs/design.md#operations-endpoint, docs/design.md#security)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e import INSTANCES, World, seed
from tests.test_cli import cli
from tests.workers.processes import spawn, stop, tail, wait_for
from threatshare.config.listen import parse_listen
from threatshare.embedded import free_port
from threatshare.ops.metrics import families
from threatshare.ops.page import StatusPage
from threatshare.ops.server import OperationsApp
from threatshare.ops.snapshot import take
from threatshare.sandbox.world import Sandbox
from threatshare.state.store import Store

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[World]:
    with Sandbox(tenant_names=("prod", "lab")) as sandbox:
        seed(sandbox)
        yield World(sandbox, tmp_path, redis_url)


def call(app: OperationsApp, path: str, method: str = "GET") -> tuple[str, dict[str, str], str]:
    """One request to the WSGI application, in process."""
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": ""}
    body = b"".join(app(environ, start_response)).decode()
    return seen["status"], seen["headers"], body


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9410", ("127.0.0.1", 9410)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9410", ("::1", 9410)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_listen_addresses_parse(text: str, expected: tuple[str, int]) -> None:
    """HOST:PORT (IPv6 in brackets) gives the host and port to bind."""
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9410", ":9410", "host:", "host:0", "host:65536", "a b:1"])
def test_bad_listen_addresses_are_refused(text: str) -> None:
    """A listen address without a host, or with a port out of range, is a ValueError."""
    with pytest.raises(ValueError, match=r"HOST:PORT|port"):
        parse_listen(text)


def test_bad_listen_setting_and_argument_get_clear_errors(world: World) -> None:
    """An invalid settings.listen makes the configuration invalid (exit 2, naming the key); an
    invalid --listen is refused by the command line."""
    bad = world.write(INSTANCES, name="bad.toml", settings={"listen": "nowhere"})
    checked = cli(bad, "check")
    assert checked.returncode == 2
    assert "settings.listen" in checked.stderr and "HOST:PORT" in checked.stderr
    refused = cli(world.write(INSTANCES), "serve", "--listen", "127.0.0.1:99999")
    assert refused.returncode == 2
    assert "--listen" in refused.stderr and "port" in refused.stderr


def test_serve_says_so_when_its_address_is_taken(world: World) -> None:
    """`serve` on an address another socket holds exits 1 with one clear line."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli(world.write(INSTANCES), "serve", "--listen", f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_run_serves_the_endpoint_when_listen_is_set(world: World, tmp_path: Path) -> None:
    """`threatshare run` with settings.listen serves /healthz and /metrics from its own
    process; the metrics show its runs and itself as a fleet worker; SIGTERM stops it all."""
    port = free_port()
    config = world.write(
        INSTANCES, settings={"listen": f"127.0.0.1:{port}", "interval": "10s", "log_format": "json"}
    )
    log = tmp_path / "run.log"
    process = spawn(config, "run", log=log)
    base = f"http://127.0.0.1:{port}"

    def metrics() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        try:
            text = httpx.get(base + "/metrics", timeout=5).text
        except httpx.TransportError:
            return None
        parsed = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        ok = ("threatshare_instance_runs_total", (("instance", "all"), ("outcome", "ok")))
        return parsed if parsed.get(ok) else None

    try:
        parsed = wait_for("a run counted in /metrics", metrics, timeout=60, every=0.5)
        assert httpx.get(base + "/healthz", timeout=5).status_code == 200
        assert httpx.get(base + "/readyz", timeout=5).status_code == 200
    finally:
        code = stop(process)
    assert code == 0, tail(log)
    assert parsed[("threatshare_workers_seen", ())] == 1
    assert parsed[("threatshare_redis_up", ())] == 1


def test_page_and_api_never_turn_upstream_text_into_markup_or_show_secrets(world: World) -> None:
    """An error message carrying markup is shown escaped; no configured secret appears on the
    page, in /api/status or in /metrics."""
    config = world.config()
    world.run(config)
    client = redis.Redis.from_url(world.redis_url)
    try:
        error = {"kind": "permanent", "code": "zia_request", "message": HOSTILE}
        Store(client).finish_error("lab", error, datetime.now(UTC), halt=True, fingerprint="f")
        app = OperationsApp(config, client)
        code, headers, page = call(app, "/")
        _, _, api = call(app, "/api/status")
        _, _, metrics = call(app, "/metrics")
        assert call(app, "/metrics", "DELETE")[0].startswith("405")
    finally:
        client.close()
    assert code == "200 OK"
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    secrets = [
        config.mimecast["main"].client_secret.get_secret_value(),
        *(t.client_secret.get_secret_value() for t in config.zia.values() if t.client_secret),
    ]
    assert len(secrets) == 3
    for body in (page, api, metrics):
        for secret in secrets:
            assert secret not in body


def test_lifecycle_counts_and_quota_reserve_are_shown_and_exported_when_recorded(
    world: World,
) -> None:
    """When the status records carry the lifecycle record (docs/design.md#expiry) and a quota
    reserve, the page shows the counts and a reserve segment, and /metrics exports the expiry,
    eviction and hand-removal totals and the reserve; without them neither appears."""
    config = world.config()
    world.run(config)
    client = redis.Redis.from_url(world.redis_url)
    try:
        taken = take(config, client, lambda: datetime.now(UTC))
    finally:
        client.close()

    def without_reserve(quota: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if quota is None else {k: v for k, v in quota.items() if k != "reserve"}

    # Records as a version without the lifecycle wrote them: no lifecycle, no reserve.
    plain = replace(
        taken,
        instances=[
            {
                **{k: v for k, v in r.items() if k != "lifecycle"},
                "quota": without_reserve(r["quota"]),
            }
            for r in taken.instances
        ],
        tenants=[replace(t, quota=without_reserve(t.quota)) for t in taken.tenants],
    )
    lifecycle = {"expired": 4, "evicted": 2, "removed_by_hand": 1, "foreign": 0, "unblocked": 3}
    records = []
    for r in plain.instances:
        extra: dict[str, Any] = {"lifecycle": lifecycle} if r["name"] == "all" else {}
        if r["quota"]:
            extra["quota"] = {**r["quota"], "reserve": 5}
        records.append({**r, **extra})
    tenants = [replace(t, quota={**t.quota, "reserve": 5}) if t.quota else t for t in plain.tenants]
    recorded = replace(plain, instances=records, tenants=tenants)
    page = StatusPage().render(recorded)
    assert "expired 4" in page and "evicted 2" in page and "removed by hand 1" in page
    assert 'class="reserve"' in page and "reserve 5" in page
    assert "expired" not in StatusPage().render(plain)
    exported = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in families(recorded)
        for s in family.samples
    }
    assert exported[("threatshare_instance_entries_expired_total", (("instance", "all"),))] == 4
    assert exported[("threatshare_instance_entries_evicted_total", (("instance", "all"),))] == 2
    assert (
        exported[("threatshare_instance_entries_removed_by_hand_total", (("instance", "all"),))]
        == 1
    )
    assert ("threatshare_instance_entries_expired_total", (("instance", "lab"),)) not in exported
    assert exported[("threatshare_tenant_quota_reserve_entries", (("tenant", "prod"),))] == 5
    names = {s.name for family in families(plain) for s in family.samples}
    assert "threatshare_instance_entries_expired_total" not in names
    assert "threatshare_tenant_quota_reserve_entries" not in names
