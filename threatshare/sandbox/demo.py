"""``threatshare demo``: the whole product on one machine with nothing configured.

Starts the sandbox (Mimecast, IdP and two ZIA tenants on loopback, an SMTP sink), seeds a
day of threats with the tricky cases docs/design.md#entries talks about, writes a sandbox
configuration, runs every instance once on the embedded Redis, then shows ``status``, what landed in
each category, and the alert e-mail of the instance whose ZIA client was revoked.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from threatshare import config as config_module
from threatshare.connection import redis_for
from threatshare.ops import status
from threatshare.ops.run_once import run_once
from threatshare.sandbox.mimecast import MimecastEmulator
from threatshare.sandbox.mimecast_logs import impersonation_log, url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.store import Store

INSTANCES = {
    "impersonation": {
        "zia": "prod",
        "category": "Mimecast Impersonation Domains",
        "description": "Look-alike sender domains",
        "sources": ["malicious_domains"],
        "notify": ["secops@sandbox.example"],
        "allow": ["partner.example"],
    },
    "urls": {
        "zia": "prod",
        "category": "Mimecast Malicious URLs",
        "description": "Malicious URLs and their hosts",
        "sources": ["malicious_urls", "url_domains"],
        "notify": ["secops@sandbox.example"],
    },
    "lab-urls": {
        "zia": "lab",
        "category": "Mimecast URLs (lab)",
        "description": "The lab tenant, whose API client has been revoked",
        "sources": ["malicious_urls"],
        "notify": ["lab-admins@sandbox.example"],
    },
}

URLS = [
    "https://Login.Micros0ft-Support.example/Verify?session=1#top",
    "http://bücher-rabatt.example:8080/angebot/",
    "https://invoice-portal.example.:443/",
    "https://docs.google.com/forms/d/e/phishy-form/viewform",  # path kept, host protected
    "https://drive.google.com/",  # a whole shared platform: skipped
    "http://192.168.10.20/admin",  # private address: skipped
    "http://203.0.113.7/payload.exe",  # documentation range: skipped
    "https://protect-eu.mimecast.com/s/abcdEFGH?domain=x.example",  # Mimecast's rewriter
    "ftp://files.bad.example/x",  # not http(s): rejected
    "https://*.wildcard.example/",  # a star: rejected
    "https://long-path.example/" + "a" * 1100,  # URL too long; its host is still pushed
    "https://8.8.4.4/stage2",  # a public IPv4 literal is allowed
]

IMPERSONATION = [
    ("ceo@examp1e-corp.example", ["similar_internal_domain"]),
    ("billing@newly-seen.example", ["newly_observed_domain"]),
    ("it@xn--exmple-cua.example", ["advanced_custom_external_domain"]),
    ("John Doe <jd@freemail.example>", ["internal_user_name"]),  # a name only: no entry
    ("sales@shop.partner.example", ["custom_external_domain"]),  # on the allow list
]


def seed(mimecast: MimecastEmulator, now: datetime) -> None:
    """A few hours of threats, oldest first."""
    start = now - timedelta(hours=6)
    mimecast.add_url_logs(
        url_log(url, start + timedelta(minutes=10 * i)) for i, url in enumerate(URLS)
    )
    mimecast.add_impersonation_logs(
        impersonation_log(sender, start + timedelta(minutes=7 * i), identifiers)
        for i, (sender, identifiers) in enumerate(IMPERSONATION)
    )


def _heading(text: str) -> None:
    print(f"\n=== {text} ===")


def run_demo(state_dir: Path | None = None) -> int:
    base = state_dir or Path(tempfile.mkdtemp(prefix="threatshare-demo-"))
    with Sandbox(tenant_names=("prod", "lab")) as sandbox:
        seed(sandbox.mimecast, datetime.now(UTC))
        sandbox.idp.revoke(sandbox.tenants["lab"].client_id)
        path = sandbox.write_config(
            base / "threatshare.toml",
            INSTANCES,
            settings={"state_dir": str(base / "state"), "settle": "0s", "log_format": "console"},
        )
        config = config_module.load(path)
        _heading(f"configuration written to {path}; running every instance once")
        with redis_for(config) as client:
            run_once(config, client, None)
            _heading("threatshare status")
            records = status.collect(config, Store(client))
            print(status.render_table(records))
        for name, inst in config.instances.items():
            active = sorted(sandbox.tenants[inst.zia].emulator.active_urls(inst.category))
            _heading(f"ZIA tenant {inst.zia!r}, category {inst.category!r} ({name}): {len(active)}")
            for url in active:
                print(f"  {url}")
        _heading(f"alert e-mails received by the SMTP sink: {len(sandbox.smtp.messages)}")
        for mail in sandbox.smtp.messages:
            print(mail.message.as_string())
    print(f"\nThe demo's files are in {base}; `threatshare --config {path} status` shows it again.")
    return 0
