"""deploy/ exposes the operations endpoint as the program serves it: Kubernetes probes
and Service, compose and systemd, and a Grafana dashboard whose queries name real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e import INSTANCES, World, seed
from tests.workers.test_deploy import DEPLOY, K8S, flow_lists
from threatshare.config.listen import parse_listen
from threatshare.ops.metrics import LIFECYCLE, TOTALS, families
from threatshare.ops.server import OperationsApp
from threatshare.ops.snapshot import Snapshot, TenantView
from threatshare.sandbox.world import Sandbox

OPS = K8S / "ops.yaml"
DASHBOARD = DEPLOY / "grafana" / "threatshare.json"


def ops_manifest() -> tuple[str, str]:
    """The Deployment and the Service documents of ops.yaml."""
    deployment, service = OPS.read_text().split("\n---\n")
    return deployment, service


def probe(deployment: str, kind: str) -> tuple[str, str]:
    """(path, port) of a Deployment's httpGet probe."""
    found = re.search(rf"{kind}:\n\s+httpGet:\n\s+path: (\S+)\n\s+port: (\S+)", deployment)
    assert found is not None, f"no {kind} with httpGet"
    return found.group(1), found.group(2)


def get(app: OperationsApp, path: str) -> tuple[str, str]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": ""}
    body = b"".join(app(environ, start_response)).decode()
    return seen["status"], body


@pytest.fixture
def synced_app(tmp_path: Path, redis_url: str) -> Iterator[OperationsApp]:
    """The endpoint's application on a Redis after a real sync with one halted instance."""
    with Sandbox(tenant_names=("prod", "lab")) as sandbox:
        seed(sandbox)
        sandbox.idp.revoke(sandbox.tenants["lab"].client_id)
        world = World(sandbox, tmp_path, redis_url)
        config = world.config(INSTANCES)
        world.run(config)
        client = redis.Redis.from_url(redis_url)
        yield OperationsApp(config, client, workers=lambda _: 0)
        client.close()


def test_probes_and_service_point_at_the_endpoint(synced_app: OperationsApp) -> None:
    """The ops Deployment's probes ask /healthz (liveness) and /readyz (readiness) on the port
    `serve --listen` binds, which answer 200; the Service selects its pods, targets that port
    and carries the scrape annotations of /metrics."""
    deployment, service = ops_manifest()
    [args] = flow_lists(deployment, "args")
    assert args[:2] == ["serve", "--listen"]
    _, listen_port = parse_listen(args[2])
    port = re.search(r"- name: (\S+)\n\s+containerPort: (\d+)", deployment)
    assert port is not None and int(port.group(2)) == listen_port
    assert probe(deployment, "livenessProbe") == ("/healthz", port.group(1))
    assert probe(deployment, "readinessProbe") == ("/readyz", port.group(1))
    for path in ("/healthz", "/readyz"):
        assert get(synced_app, path)[0] == "200 OK"
    pod_labels = set(re.findall(r"app\.kubernetes\.io/\S+: \S+", deployment.split("template:")[1]))
    selector = service.split("selector:")[1].split("ports:")[0]
    assert set(re.findall(r"app\.kubernetes\.io/\S+: \S+", selector)) <= pod_labels
    assert re.search(rf"targetPort: {port.group(1)}\b", service)
    assert 'prometheus.io/scrape: "true"' in service
    assert f'prometheus.io/port: "{listen_port}"' in service
    assert "prometheus.io/path: /metrics" in service
    assert "ops.yaml" in (K8S / "kustomization.yaml").read_text()
    monitor = (K8S / "servicemonitor.yaml").read_text()
    assert f"port: {port.group(1)}" in monitor and "path: /metrics" in monitor


def test_compose_and_systemd_expose_the_endpoint() -> None:
    """Compose publishes the endpoint on the host's loopback at the port it listens on; the
    single-machine configuration sets settings.listen on loopback; a unit runs `serve`."""
    compose = (DEPLOY / "compose.yaml").read_text()
    [serve] = [c for c in flow_lists(compose, "command") if c[0] == "serve"]
    _, port = parse_listen(serve[2])
    assert f'"127.0.0.1:{port}:{port}"' in compose
    single = tomllib.loads((DEPLOY / "systemd" / "threatshare.toml").read_text())
    assert parse_listen(single["settings"]["listen"])[0] == "127.0.0.1"
    unit = (DEPLOY / "systemd" / "threatshare-serve.service").read_text()
    assert "ExecStart=/opt/threatshare/bin/threatshare serve" in unit
    assert "EXPOSE 9410" in (DEPLOY / "Dockerfile").read_text()


def test_dashboard_queries_name_metrics_the_endpoint_exports(synced_app: OperationsApp) -> None:
    """The Grafana dashboard is valid JSON, covers what an operator needs to see, and every
    metric its queries name is one a scrape of the endpoint really returns."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    named = {m for expr in exprs for m in re.findall(r"\bthreatshare_[a-z_]+\b", expr)}
    status, text = get(synced_app, "/metrics")
    assert status == "200 OK"
    exported = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }
    assert named <= exported, named - exported
    for needed in (
        "threatshare_instance_state",
        "threatshare_instance_bookmark_age_seconds",
        "threatshare_instance_category_entries",
        "threatshare_tenant_quota_used_entries",
        "threatshare_instance_errors_total",
        "threatshare_tenant_activations_total",
    ):
        assert needed in named, needed
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(titles) == len(set(titles))
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def _every_metric_exported() -> set[str]:
    """Every sample name the collector exports when everything it can report is present: an
    instance with runs, errors and lifecycle counts, a tenant with a quota, and workers."""
    at = datetime(2024, 5, 10, 12, tzinfo=UTC)
    record = {
        "name": "urls",
        "state": "ok",
        "bookmark": "2024-05-10T11:59:00Z",
        "category": {"entries": 3},
        "run_stats": {
            "last_duration_seconds": 1.5,
            "runs_by_outcome": {"ok": 2, "error": 1},
            "errors_by_code": {"zia_auth": 1},
        },
        "totals": {name: 1 for name in TOTALS},
        "lifecycle": {name: 1 for name in LIFECYCLE},
        "clock_skew_seconds": 3,
    }
    tenant = TenantView(
        "prod",
        {"used": 5, "remaining": 95, "reserve": 5},
        activations=1,
        rate_limited=1,
        last_activation="2024-05-10T11:58:00Z",
        pending_activation_since="2024-05-10T11:50:00Z",
    )
    snapshot = Snapshot(at, [record], [tenant], outbox=1, workers=2)
    exported = list(families(snapshot))
    assert all(family.samples for family in exported)  # each family really has a value here
    return {sample.name for family in exported for sample in family.samples}


def test_every_exported_metric_has_a_dashboard_panel() -> None:
    """Each metric the endpoint can export is queried by at least one dashboard panel, so a
    new metric without a panel fails here."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    named = {m for expr in exprs for m in re.findall(r"\bthreatshare_[a-z_]+\b", expr)}
    exported = _every_metric_exported()
    assert len(exported) >= 20
    assert exported <= named, sorted(exported - named)


def test_the_image_is_set_in_one_place() -> None:
    """Every threatshare container names the image `threatshare` untagged, and
    kustomization.yaml's `images:` maps that name to a registry path and tag; rendered by
    kustomize, a changed entry reaches all three Deployments."""
    kustomization = (K8S / "kustomization.yaml").read_text()
    assert re.search(
        r"images:\n  - name: threatshare\b.*\n    newName: \S+.*\n    newTag: \S+", kustomization
    )
    for manifest in ("workers.yaml", "scheduler.yaml", "ops.yaml"):
        images = re.findall(r"^\s+image: (\S+)", (K8S / manifest).read_text(), re.M)
        assert images == ["threatshare"], (manifest, images)
    assert "kustomize edit set image" in (DEPLOY / "README.md").read_text()
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return  # the static checks above still hold
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "kubernetes"
        shutil.copytree(K8S, copy)
        text = (copy / "kustomization.yaml").read_text()
        text = re.sub(r"newName: \S+", "newName: registry.example.com/sec/threatshare", text)
        text = re.sub(r"newTag: \S+", "newTag: 1.2.3", text)
        (copy / "kustomization.yaml").write_text(text)
        rendered = subprocess.run(
            [kubectl, "kustomize", str(copy)], capture_output=True, text=True, timeout=60
        )
    assert rendered.returncode == 0, rendered.stderr
    images = re.findall(r"^\s+image: (\S+)", rendered.stdout, re.M)
    assert images.count("registry.example.com/sec/threatshare:1.2.3") == 3
    assert [i for i in images if "threatshare" in i and "1.2.3" not in i] == []
