"""`threatshare serve` as a real process on a real Redis after a real sync: /metrics agrees
with `status --json`, the probes tell up from ready, and Redis going away is survived
(docs/design.md#operations-endpoint)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.ops.served import served
from threatshare.timestamps import from_iso

STATES = {"new", "ok", "retrying", "halted", "disabled"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, parsed by prometheus_client: (name, labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed[(name, tuple(sorted(labels.items())))]


def test_metrics_agree_with_status_json(tmp_path: Path) -> None:
    """After a sync, every per-instance and per-tenant value of /metrics equals what
    `status --json` says, and the ZIA 429s and activations are counted."""
    with served(tmp_path, zia_429s=2) as s:
        assert s.run_once.returncode == 1, s.run_once.stderr  # lab halted
        document = s.status_json()
        before = datetime.now(UTC)
        response = s.get("/metrics")
        after = datetime.now(UTC)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    parsed = samples(response.text)
    assert value(parsed, "threatshare_redis_up") == 1
    records = {r["name"]: r for r in document["instances"]}
    assert {r["state"] for r in records.values()} == {"ok", "halted"}
    for name, r in records.items():
        for state in STATES:
            expected = 1.0 if state == r["state"] else 0.0
            assert value(parsed, "threatshare_instance_state", instance=name, state=state) == (
                expected
            ), (name, state)
        assert (
            value(parsed, "threatshare_instance_category_entries", instance=name)
            == (r["category"]["entries"])
        )
        assert (
            value(parsed, "threatshare_instance_entries_pushed_total", instance=name)
            == (r["totals"]["pushed"])
        )
        assert (
            value(parsed, "threatshare_instance_records_pulled_total", instance=name)
            == (r["totals"]["pulled"])
        )
        stats = r["run_stats"]
        assert stats["runs_by_outcome"] == {r["state"]: 1}
        for outcome, count in stats["runs_by_outcome"].items():
            assert (
                value(parsed, "threatshare_instance_runs_total", instance=name, outcome=outcome)
                == count
            )
        for code, count in stats["errors_by_code"].items():
            assert value(parsed, "threatshare_instance_errors_total", instance=name, code=code) == (
                count
            )
        duration = value(parsed, "threatshare_instance_last_run_duration_seconds", instance=name)
        assert duration == stats["last_duration_seconds"] and duration >= 0
        bookmark = from_iso(r["bookmark"])
        key = ("threatshare_instance_bookmark_age_seconds", (("instance", name),))
        if bookmark is None:
            assert key not in parsed
        else:
            age = parsed[key]
            assert (before - bookmark).total_seconds() - 1 <= age
            assert age <= (after - bookmark).total_seconds() + 1
    assert records["lab"]["run_stats"]["errors_by_code"] == {"zia_auth": 1}
    assert records["all"]["category"]["entries"] > 0
    for tenant in ("prod", "lab"):
        quota = next(r["quota"] for r in records.values() if r["zia"] == tenant)
        if quota is None:
            assert ("threatshare_tenant_quota_used_entries", (("tenant", tenant),)) not in parsed
            continue
        assert (
            value(parsed, "threatshare_tenant_quota_used_entries", tenant=tenant) == quota["used"]
        )
        assert (
            value(parsed, "threatshare_tenant_quota_remaining_entries", tenant=tenant)
            == quota["remaining"]
        )
    assert records["all"]["quota"] is not None
    assert value(parsed, "threatshare_tenant_activations_total", tenant="prod") == 1
    assert value(parsed, "threatshare_tenant_activations_total", tenant="lab") == 0
    assert value(parsed, "threatshare_tenant_rate_limited_responses_total", tenant="prod") == 2
    assert value(parsed, "threatshare_tenant_rate_limited_responses_total", tenant="lab") == 0
    assert value(parsed, "threatshare_tenant_last_activation_age_seconds", tenant="prod") >= 0
    tenants = {t["zia"][0]: t for t in document["tenants"]}
    assert set(tenants) == {"prod", "lab"}
    assert tenants["prod"]["pending_activation"] is False  # activated at the end of the run
    assert tenants["prod"]["activations"] == 1
    assert value(parsed, "threatshare_tenant_activation_pending_seconds", tenant="prod") == 0
    assert value(parsed, "threatshare_tenant_activation_refused", tenant="prod") == 0
    assert value(parsed, "threatshare_outbox_alerts") == 0  # the halt's alert was delivered
    assert value(parsed, "threatshare_workers_seen") == 0
    for (_, labels), _v in parsed.items():
        assert {k for k, _ in labels} <= {"instance", "tenant", "state", "outcome", "code"}


def test_api_status_is_the_status_document_and_probes(tmp_path: Path) -> None:
    """/api/status is `status --json`'s document; /healthz and /readyz answer 200 while Redis
    is up; writes are refused and unknown paths are 404."""
    with served(tmp_path) as s:
        document = s.status_json()
        api = s.get("/api/status")
        assert api.status_code == 200
        assert api.headers["content-type"] == "application/json"
        assert json.loads(api.text) == document
        assert s.get("/healthz").status_code == 200
        assert s.get("/readyz").status_code == 200
        assert s.get("/nothing-here").status_code == 404
        import httpx2 as httpx

        refused = httpx.post(s.base + "/api/status", timeout=10)
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET, HEAD"


def test_redis_down_is_survived(tmp_path: Path) -> None:
    """With Redis stopped, /healthz still answers 200, /readyz and /api/status 503, and
    /metrics parses with threatshare_redis_up 0 and no stale value; the URL is never shown."""
    with served(tmp_path) as s:
        s.redis.stop()
        assert s.get("/healthz").status_code == 200
        ready = s.get("/readyz")
        assert ready.status_code == 503
        assert "Redis cannot be reached" in ready.text
        api = s.get("/api/status")
        assert api.status_code == 503
        assert "error" in json.loads(api.text)
        metrics = s.get("/metrics")
        assert metrics.status_code == 200
        parsed = samples(metrics.text)
        assert parsed == {("threatshare_redis_up", ()): 0.0}
        for body in (ready.text, api.text, metrics.text, s.get("/").text):
            assert s.redis.url not in body
            assert str(s.redis.port) not in body
