"""Upstream answers are read under a size cap after decompression (docs/design.md#security): a gzip
bomb from Mimecast, the IdP or ZIA is refused with an error naming the limit, and memory stays
flat."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2 as httpx
import pytest

from tests.e2e import run_in_process
from threatshare import config as config_module
from threatshare.errors import TemporaryError
from threatshare.http import make_client
from threatshare.http_limits import MAX_RESPONSE_BYTES, ResponseTooLarge
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.server import EmulatorServer
from threatshare.sandbox.world import Sandbox

ROOT = Path(__file__).resolve().parents[1]
INSTANCES = {"urls": {"zia": "prod", "category": "Bomb URLs", "sources": ["malicious_urls"]}}
LIMIT_TEXT = "64 MiB size limit"
#: A generous bound on the peak memory of a run fed a 1 GiB-inflating answer.
PEAK_RSS_BOUND_MB = 200


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(tenant_names=("prod",)) as world:
        world.mimecast.add_url_logs(
            [url_log("https://bomb.example/x", datetime.now(UTC) - timedelta(hours=1))]
        )
        yield world


def _config_path(sandbox: Sandbox, tmp_path: Path, redis_url: str) -> Path:
    settings = {"redis_url": redis_url, "settle": "0s", "log_format": "json"}
    return sandbox.write_config(tmp_path / "threatshare.toml", INSTANCES, settings=settings)


def _bombed_server(sandbox: Sandbox, upstream: str) -> tuple[EmulatorServer, str]:
    """The server of ``upstream`` and the path prefix of the calls a run makes first."""
    servers = {
        "mimecast": (sandbox.mimecast_server, "/api/ttp/url"),
        "idp": (sandbox.idp_server, "/"),
        "zia": (sandbox.tenants["prod"].server, "/api/v1/urlCategories"),
    }
    return servers[upstream]


class TestEveryUpstreamIsCapped:
    @pytest.mark.parametrize("upstream", ["mimecast", "idp", "zia"])
    def test_a_gzip_bomb_is_a_temporary_error_naming_the_limit(
        self, sandbox: Sandbox, tmp_path: Path, redis_url: str, upstream: str
    ) -> None:
        """A 1 MB gzip answer inflating to 1 GiB, from any upstream, ends the run `retrying`
        with an error that names the size limit; nothing is shared from it."""
        config = config_module.load(_config_path(sandbox, tmp_path, redis_url))
        server, path = _bombed_server(sandbox, upstream)
        server.send_gzip_bombs(path, count=1000)
        result = run_in_process(config, redis_url)["urls"]
        assert result.outcome == "retrying"
        assert result.error is not None
        assert result.error["code"] == "response_too_large", result.error
        assert LIMIT_TEXT in result.error["message"]
        assert sandbox.tenants["prod"].emulator.staged_urls("Bomb URLs") == set()

    def test_a_declared_length_over_the_cap_is_refused_before_reading(self) -> None:
        """An answer whose Content-Length is over the cap is refused without reading a byte."""
        read: list[bytes] = []

        class Endless(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                read.append(b"x")
                yield b"x"

        def answer(request: httpx.Request) -> httpx.Response:
            headers = {"Content-Length": str(MAX_RESPONSE_BYTES + 1)}
            return httpx.Response(200, headers=headers, stream=Endless())

        client = make_client("https://api.example.com", transport=httpx.MockTransport(answer))
        with client, pytest.raises(ResponseTooLarge, match=LIMIT_TEXT) as refused:
            client.get("/x")
        assert isinstance(refused.value, TemporaryError)
        assert read == []

    def test_answers_under_the_cap_are_decoded_as_before(self) -> None:
        """Ordinary answers, compressed or not, still read whole (the cap changes nothing else)."""
        body = b'{"ok": true, "padding": "' + b"p" * 100_000 + b'"}'

        def answer(request: httpx.Request) -> httpx.Response:
            encoded = gzip.compress(body) if request.url.path == "/gz" else body
            headers = {"Content-Encoding": "gzip"} if request.url.path == "/gz" else {}
            return httpx.Response(200, headers=headers, content=encoded)

        with make_client("https://api.example.com", transport=httpx.MockTransport(answer)) as c:
            assert c.get("/gz").content == body
            assert c.get("/plain").json()["ok"] is True


# The child reports its own high-water mark: VmHWM belongs to the process image after exec,
# unlike ru_maxrss, which also counts the forked copy of the (large) test process.
REPORT_PEAK = """
import atexit, sys
from pathlib import Path

def report() -> None:
    status = Path("/proc/self/status").read_text().splitlines()
    Path(sys.argv[1]).write_text(next(line for line in status if line.startswith("VmHWM")))

atexit.register(report)
from threatshare.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


class TestMemoryStaysFlat:
    def test_a_run_fed_a_gzip_bomb_stays_under_the_memory_bound(
        self, sandbox: Sandbox, tmp_path: Path, redis_url: str
    ) -> None:
        """`run --once` answered once with a 1 GiB-inflating gzip page peaks well under 200 MB,
        logs the refusal naming its cause, retries, and shares the threat."""
        config_path = _config_path(sandbox, tmp_path, redis_url)
        sandbox.mimecast_server.send_gzip_bombs("/api/ttp/url", count=1)
        peak_file = tmp_path / "peak"
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("THREATSHARE_")}
        command = ["--config", str(config_path), "run", "--once"]
        done = subprocess.run(
            [sys.executable, "-c", REPORT_PEAK, str(peak_file), *command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-3000:]
        peak_mb = int(peak_file.read_text().split()[1]) / 1024  # "VmHWM:  123456 kB"
        assert peak_mb < PEAK_RSS_BOUND_MB, f"peak RSS {peak_mb:.0f} MB"
        assert "response_too_large" in output, output[-3000:]
        assert sandbox.tenants["prod"].emulator.staged_urls("Bomb URLs") == {"bomb.example/x"}
