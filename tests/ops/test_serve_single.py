"""`threatshare serve` in single-machine mode: it reads the embedded Redis of a running
`threatshare run` (found by its socket in state_dir), and says in one line when none runs."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx

from tests.test_cli import cli
from tests.workers.processes import spawn, stop, tail, wait_for
from threatshare.embedded import connect_or_start, free_port, running_url
from threatshare.sandbox.world import Sandbox

INSTANCES = {"urls": {"zia": "prod", "category": "Single URLs", "sources": ["malicious_urls"]}}


def _settings(state_dir: Path) -> dict[str, str]:
    return {"state_dir": str(state_dir), "interval": "10s", "settle": "0s", "log_format": "json"}


def test_serve_without_a_running_run_says_so_in_one_line(tmp_path: Path) -> None:
    """No `run` on the state_dir: exit 3 with one line naming the state_dir and what to do,
    and no embedded Redis started (that would take the ownership `run` needs)."""
    state_dir = tmp_path / "state"
    with Sandbox(tenant_names=("prod",)) as sandbox:
        config = sandbox.write_config(
            tmp_path / "threatshare.toml", INSTANCES, settings=_settings(state_dir)
        )
        done = cli(config, "serve", "--listen", f"127.0.0.1:{free_port()}")
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "no `threatshare run` is running" in lines[0] and str(state_dir) in lines[0]
    assert "Redis is down" not in done.stdout + done.stderr
    assert running_url(state_dir) is None


def test_serve_beside_run_reads_its_embedded_redis(tmp_path: Path) -> None:
    """While the embedded Redis of state_dir is owned by a long-lived process (as `threatshare
    run` owns it) and holds a synced instance, `serve` is ready and shows that instance."""
    state_dir = tmp_path / "state"
    with Sandbox(tenant_names=("prod",)) as sandbox:
        config = sandbox.write_config(
            tmp_path / "threatshare.toml", INSTANCES, settings=_settings(state_dir)
        )
        _, owner = connect_or_start(state_dir, own=True)  # what `run` does at its start
        assert owner is not None
        serve = None
        serve_log = tmp_path / "serve.log"
        try:
            once = cli(config, "run", "--once")
            assert once.returncode == 0, once.stderr
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            serve = spawn(config, "serve", "--listen", f"127.0.0.1:{port}", log=serve_log)

            def ready() -> bool:
                try:
                    return httpx.get(base + "/readyz", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            try:
                wait_for("serve to be ready", ready, 30)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{tail(serve_log)}") from None
            document = httpx.get(base + "/api/status", timeout=5).json()
            assert [(r["name"], r["state"]) for r in document["instances"]] == [("urls", "ok")]
            assert "Single URLs" in httpx.get(base + "/", timeout=5).text
        finally:
            if serve is not None:
                assert stop(serve) == 0, tail(serve_log)
            owner.stop()
