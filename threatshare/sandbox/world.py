"""A complete sandbox on loopback: Mimecast, an OAuth2 IdP, ZIA tenants and an SMTP sink.

Used by ``threatshare demo``, the end-to-end tests and the benchmarks. :meth:`Sandbox.config`
writes a threatshare configuration that points every upstream at the emulators, so the real
product code runs unchanged against them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from threatshare.sandbox.idp import IdpEmulator
from threatshare.sandbox.mimecast import MimecastEmulator
from threatshare.sandbox.server import EmulatorServer
from threatshare.sandbox.smtp import SmtpSink
from threatshare.sandbox.zia import ZiaEmulator
from threatshare.sandbox.zia_host import ZiaHost

SANDBOX_CLOUD = "zscloud.net"
SENDER = "threatshare@sandbox.example"


@dataclass
class Tenant:
    """One emulated ZIA tenant with its OAuth client at the IdP."""

    name: str
    org_id: int
    emulator: ZiaEmulator
    server: EmulatorServer
    client_id: str
    client_secret: str
    #: The legacy login of the same tenant (``auth = "legacy"``).
    api_key: str
    username: str
    password: str

    @property
    def scope(self) -> str:
        return f"{SANDBOX_CLOUD}::{self.org_id}::threatshare"


@dataclass
class Sandbox:
    """Start with :meth:`start`, stop with :meth:`stop` (or use as a context manager)."""

    tenant_names: Sequence[str] = ("prod",)
    time_scale: float = 1.0
    enforce_limits: bool = True
    url_quota: int = 25_000
    seed: int = 0
    #: Serve every tenant on one API host, routed by the org its token names, as real
    #: organisations share ``zsapi.<cloud>``; False: one host per tenant.
    shared_host: bool = False
    mimecast: MimecastEmulator = field(init=False)
    idp: IdpEmulator = field(init=False)
    smtp: SmtpSink = field(init=False)
    tenants: dict[str, Tenant] = field(init=False, default_factory=dict)
    _servers: list[EmulatorServer] = field(init=False, default_factory=list)
    _host: ZiaHost | None = field(init=False, default=None)
    _host_server: EmulatorServer | None = field(init=False, default=None)

    def start(self) -> Sandbox:
        self.mimecast = MimecastEmulator(seed=self.seed)
        self.idp = IdpEmulator()
        self._mimecast_server = self._serve(self.mimecast)
        self._idp_server = self._serve(self.idp)
        for index, name in enumerate(self.tenant_names, start=1):
            self.add_tenant(name, org_id=1000 + index)
        self.smtp = SmtpSink().start()
        return self

    def _serve(self, app: Any) -> EmulatorServer:
        server = EmulatorServer(app).start()
        self._servers.append(server)
        return server

    def add_tenant(self, name: str, *, org_id: int) -> Tenant:
        client_id = f"zia-{name}"
        client_secret = f"zia-{name}-sandbox-secret"
        scope = f"{SANDBOX_CLOUD}::{org_id}::threatshare"
        self.idp.add_client(client_id, client_secret, scope=scope)
        legacy = (f"{org_id}sandboxapikey", f"api-admin@{name}.sandbox.example", f"{name}-Pass-1")
        emulator = ZiaEmulator(
            idp=self.idp,
            scope=scope,
            url_quota=self.url_quota,
            time_scale=self.time_scale,
            enforce_limits=self.enforce_limits,
            api_key=legacy[0],
            username=legacy[1],
            password=legacy[2],
        )
        server = self._serve_tenant(emulator)
        tenant = Tenant(name, org_id, emulator, server, client_id, client_secret, *legacy)
        self.tenants[name] = tenant
        return tenant

    def _serve_tenant(self, emulator: ZiaEmulator) -> EmulatorServer:
        if not self.shared_host:
            return self._serve(emulator)
        if self._host is None or self._host_server is None:
            self._host = ZiaHost(self.idp)
            self._host_server = self._serve(self._host)
        self._host.add(emulator)
        return self._host_server

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
        self.smtp.stop()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def mimecast_url(self) -> str:
        return self._mimecast_server.url

    @property
    def mimecast_server(self) -> EmulatorServer:
        return self._mimecast_server

    @property
    def idp_server(self) -> EmulatorServer:
        return self._idp_server

    @property
    def token_url(self) -> str:
        return f"{self._idp_server.url}/oauth2/v1/token"

    def config(
        self,
        instances: Mapping[str, Mapping[str, Any]],
        *,
        settings: Mapping[str, Any] | None = None,
        admins: Iterable[str] = ("soc@sandbox.example",),
        tenant_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> str:
        """TOML for ``instances`` (name -> instance table) on this sandbox's upstreams."""
        account = self.mimecast.account(self.mimecast_url)
        tables: dict[str, Mapping[str, Any]] = {
            "settings": {"admins": list(admins), **(settings or {})},
            "smtp": {
                "host": "127.0.0.1",
                "port": self.smtp.port,
                "security": "none",
                "sender": SENDER,
            },
            "mimecast.main": {
                "base_url": account.base_url,
                "client_id": account.client_id,
                "client_secret": account.client_secret.get_secret_value(),
            },
        }
        for name, tenant in self.tenants.items():
            tables[f"zia.{name}"] = {
                "api_base": f"{tenant.server.url}/api/v1",
                "auth": "oauth",
                "token_url": self.token_url,
                "client_id": tenant.client_id,
                "client_secret": tenant.client_secret,
                "scope": tenant.scope,
                **((tenant_overrides or {}).get(name, {})),
            }
        for name, table in instances.items():
            tables[f"instances.{name}"] = {"mimecast": "main", **table}
        return to_toml(tables)

    def write_config(
        self, path: Path, instances: Mapping[str, Mapping[str, Any]], **kw: Any
    ) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.config(instances, **kw))
        path.chmod(0o600)  # it holds (sandbox) secrets
        return path


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def to_toml(tables: Mapping[str, Mapping[str, Any]]) -> str:
    """Flat TOML for ``{"section.name": {key: value}}``; enough for configuration files."""
    lines = []
    for header, table in tables.items():
        lines.append(f"[{header}]")
        lines.extend(f"{key} = {_value(value)}" for key, value in table.items())
        lines.append("")
    return "\n".join(lines)
