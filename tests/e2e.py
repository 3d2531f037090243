"""A sandbox world for end-to-end tests: emulators on loopback, a real Redis, real SMTP."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from threatshare import config as config_module
from threatshare.alerts.outbox import Outbox
from threatshare.config import Config
from threatshare.http import RetryPolicy
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import impersonation_log, url_log
from threatshare.sandbox.world import Sandbox
from threatshare.sync import RunResult, halt_refused_tenants, sync_all
from threatshare.sync.activation import activate_pending

FAST = RetryPolicy(max_attempts=12, initial_wait=0.01, max_wait=0.05, jitter=0.01)

# Seeded threats and the entries each source must make of them (docs/design.md#entries).
URL_RECORDS = [
    ("https://Evil.Example.COM:443/Login?x=1#f", "evil.example.com/login", "evil.example.com"),
    ("http://bücher.example:8080/a/", "xn--bcher-kva.example:8080/a/", "xn--bcher-kva.example"),
    ("https://evil.example.", "evil.example", "evil.example"),
    ("http://10.0.0.1/x", None, None),  # private: skipped
    ("https://docs.google.com/forms/abc", "docs.google.com/forms/abc", None),  # protected host
    ("ftp://x.example/", None, None),  # rejected
]
IMPERSONATION_RECORDS = [
    ("a@look-alike.example", ["similar_internal_domain"], ".look-alike.example"),
    ("b@name-only.example", ["internal_user_name"], None),
]


def expected(sources: list[str]) -> set[str]:
    out: set[str] = set()
    for _, url_entry, host_entry in URL_RECORDS:
        if "malicious_urls" in sources and url_entry:
            out.add(url_entry)
        if "url_domains" in sources and host_entry:
            out.add(host_entry)
    if "malicious_domains" in sources:
        out |= {entry for _, _, entry in IMPERSONATION_RECORDS if entry}
    return out


INSTANCES: dict[str, dict[str, Any]] = {
    "all": {
        "zia": "prod",
        "category": "All Threats",
        "sources": ["malicious_urls", "url_domains", "malicious_domains"],
        "notify": ["all@example.com"],
    },
    "domains": {
        "zia": "prod",
        "category": "Impersonation",
        "sources": ["malicious_domains"],
        "notify": ["domains@example.com"],
    },
    "lab": {
        "zia": "lab",
        "category": "Lab URLs",
        "sources": ["malicious_urls"],
        "notify": ["lab@example.com"],
    },
}


def seed(sandbox: Sandbox, at: datetime | None = None) -> None:
    at = at or datetime.now(UTC) - timedelta(hours=2)
    sandbox.mimecast.add_url_logs(
        url_log(url, at + timedelta(seconds=i)) for i, (url, _, _) in enumerate(URL_RECORDS)
    )
    sandbox.mimecast.add_impersonation_logs(
        impersonation_log(sender, at + timedelta(seconds=i), ids)
        for i, (sender, ids, _) in enumerate(IMPERSONATION_RECORDS)
    )


MakeRuntime = Callable[[Config, redis.Redis], Runtime]


def fast_runtime(config: Config, client: redis.Redis) -> Runtime:
    """A runtime whose retries wait milliseconds, not seconds."""
    return Runtime(config, client, policy=FAST, zia_reauth_wait=0.05)


def run_in_process(
    config: Config, redis_url: str, make_runtime: MakeRuntime = fast_runtime
) -> dict[str, RunResult]:
    """One `run --once`, in process: every enabled instance, activation, the outbox."""
    client = redis.Redis.from_url(redis_url)
    rt = make_runtime(config, client)
    try:
        results = sync_all(rt, config.enabled_instances())
        halt_refused_tenants(rt, activate_pending(rt))
    finally:
        rt.close()
    Outbox(client).deliver(config.smtp)
    client.close()
    return {r.instance: r for r in results}


@dataclass
class World:
    sandbox: Sandbox
    tmp: Path
    redis_url: str

    def write(
        self,
        instances: Mapping[str, Mapping[str, Any]] = INSTANCES,
        name: str = "threatshare.toml",
        **kw: Any,
    ) -> Path:
        settings = {"redis_url": self.redis_url, "settle": "0s", **kw.pop("settings", {})}
        return self.sandbox.write_config(self.tmp / name, instances, settings=settings, **kw)

    def config(self, instances: Mapping[str, Mapping[str, Any]] = INSTANCES, **kw: Any) -> Config:
        return config_module.load(self.write(instances, **kw))

    def run(self, config: Config) -> dict[str, RunResult]:
        return run_in_process(config, self.redis_url)

    def active(self, config: Config, name: str) -> set[str]:
        inst = config.instances[name]
        return self.sandbox.tenants[inst.zia].emulator.active_urls(inst.category)

    def zia_calls(self, tenant: str) -> int:
        return len(self.sandbox.tenants[tenant].emulator.calls)

    def mails(self) -> list[Any]:
        return self.sandbox.smtp.messages
