"""A rediss:// Redis URL verifies the server's certificate and its host name
(docs/design.md#security)."""

from __future__ import annotations

import ssl
import tomllib
from pathlib import Path

import redis
from packaging.requirements import Requirement
from packaging.version import Version
from pydantic import SecretStr

from threatshare.config import Config, Settings
from threatshare.connection import redis_for

ROOT = Path(__file__).resolve().parent.parent
#: redis-py 6.0.0 made ssl_check_hostname default to True (redis/redis-py#3626).
FIRST_CHECKING_HOSTNAMES = Version("6.0.0")


def test_the_redis_requirement_admits_only_versions_that_check_host_names() -> None:
    """pyproject's redis floor is a version whose rediss:// checks host names by default."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (requirement,) = [
        Requirement(r) for r in project["project"]["dependencies"] if Requirement(r).name == "redis"
    ]
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    assert floors and min(floors) >= FIRST_CHECKING_HOSTNAMES
    assert Version(redis.__version__) in requirement.specifier


def test_a_rediss_connection_checks_certificate_and_host_name() -> None:
    """The client threatshare builds for a rediss:// URL requires a certificate and checks that
    it names the host (built, not connected)."""
    url = SecretStr("rediss://:Tls-Pass-4@redis.example.com:6380/0")
    with redis_for(Config(settings=Settings(redis_url=url))) as client:
        pool = client.connection_pool
        connection = pool.connection_class(**pool.connection_kwargs)
    assert isinstance(connection, redis.SSLConnection)
    assert connection.check_hostname is True
    assert connection.cert_reqs == ssl.CERT_REQUIRED
