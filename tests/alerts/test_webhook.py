"""Alerts to Slack, Teams and generic JSON webhooks: through the outbox like e-mail (once per
incident, retried through a receiver outage, bounded), in each receiver's shape, and never
carrying a secret — the webhook URL itself included — to the receiver, Redis or the logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import ValidationError
from structlog.testing import capture_logs

from tests.e2e import INSTANCES, World, seed
from tests.test_cli import cli
from threatshare.alerts.channels import webhook_ref, webhook_shape
from threatshare.alerts.message import Alert, recipients_for
from threatshare.alerts.outbox import Delivery, Outbox
from threatshare.config import Config, load
from threatshare.sandbox.smtp import SmtpSink
from threatshare.sandbox.webhook import WebhookReceiver
from threatshare.sandbox.world import Sandbox

START = 1_715_342_400.0  # 2024-05-10 12:00:00 UTC
CLIENT_SECRET = "mimecast-client-secret-9f8e7d"
HOSTILE = "token endpoint said <!channel> ```x``` see http://evil.example.com/login \x1b[31m"


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def outbox(redis_client: redis.Redis, clock: Clock) -> Outbox:
    return Outbox(redis_client, first_wait=30.0, max_wait=300.0, clock=clock)


def _config(notify: list[str], admins: list[str] | None = None, **smtp: Any) -> Config:
    data: dict[str, Any] = {
        "settings": {"admins": admins or []},
        "mimecast": {"main": {"client_id": "id", "client_secret": CLIENT_SECRET}},
        "zia": {"prod": {"cloud": "zscloud.net", "api_key": "k3y-value-long"}},
        "instances": {
            "impersonation": {
                "mimecast": "main",
                "zia": "prod",
                "category": "Mimecast Impersonation Domains",
                "sources": ["malicious_domains"],
                "notify": notify,
            }
        },
    }
    if smtp:
        data["smtp"] = smtp
    return Config.model_validate(data)


def _alert(config: Config, kind: str = "halted", message: str = HOSTILE) -> Alert:
    return Alert(
        kind=kind,  # type: ignore[arg-type]
        instance="impersonation",
        category="Mimecast Impersonation Domains",
        zia_tenant="prod",
        mimecast_account="main",
        code="zia_auth" if kind == "halted" else None,
        message=message if kind == "halted" else None,
        since=datetime(2024, 5, 10, 9, tzinfo=UTC),
        bookmark=datetime(2024, 5, 10, 8, tzinfo=UTC),
        recipients=recipients_for(config, "impersonation"),
        indicators=("https://evil.example.com/login",),
    )


def _everything_in_redis(client: redis.Redis) -> str:
    """Every key and value in Redis, as text (lists, strings), to search for a secret."""
    out = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key).decode()
        out.append(key.decode())
        if kind == "list":
            out.extend(v.decode() for v in client.lrange(key, 0, -1))
        elif kind == "string":
            out.append((client.get(key) or b"").decode(errors="replace"))
    return "\n".join(out)


class TestConfiguration:
    def test_mailto_bare_and_webhook_recipients_are_accepted(self) -> None:
        """notify and admins take bare and mailto: addresses and https webhook URLs."""
        config = _config(
            ["mailto:secops@example.com", "https://hooks.slack.com/services/T0/B0/abc123xyz"],
            admins=["soc@example.com", "https://example.webhook.office.com/webhookb2/x/y"],
        )
        assert config.instances["impersonation"].notify[0] == "secops@example.com"
        assert config.settings.admins[0] == "soc@example.com"
        assert len(config.webhook_urls()) == 2

    @pytest.mark.parametrize(
        "bad",
        [
            "http://hooks.example.com/secret-token-123",  # clear text off loopback
            "https://hooks.example.com/x#markdown",  # unknown shape
            "https://user:pw@hooks.example.com/x",  # userinfo
            "mailto:",
            "not-an-address",
        ],
    )
    def test_bad_recipients_are_refused_without_quoting_them(self, bad: str) -> None:
        """A recipient that is neither an address nor an acceptable webhook URL is a
        configuration error that does not repeat the value (it may carry a token)."""
        with pytest.raises(ValidationError) as caught:
            _config([bad])
        text = str(caught.value.errors(include_input=False, include_url=False))
        assert "secret-token-123" not in text and "pw@" not in text

    def test_the_url_is_a_secret_and_alerts_hold_its_reference(self) -> None:
        """A webhook URL is among the configuration's secrets; an alert names it by reference."""
        url = "https://hooks.slack.com/services/T0/B0/abc123xyz"
        config = _config(["secops@example.com", url])
        assert url in config.secret_values()
        recipients = recipients_for(config, "impersonation")
        assert recipients == ("secops@example.com", webhook_ref(url))
        assert "abc123xyz" not in json.dumps(_alert(config).to_dict())

    def test_webhooks_can_come_from_a_secret_file_or_the_environment(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Where secrets belong: a secret file with one recipient per line, or an environment
        variable with a JSON list, fill `admins` and `notify`."""
        secrets = tmp_path / "secrets"
        secrets.mkdir()
        (secrets / "threatshare_settings__admins").write_text(
            "https://hooks.slack.com/services/T0/B0/from-a-file\nmailto:soc@example.com\n"
        )
        path = tmp_path / "threatshare.toml"
        path.write_text(
            f'[settings]\nsecrets_dir = "{secrets}"\n'
            '[mimecast.main]\nclient_id = "id"\nclient_secret = "s3cret-value"\n'
            '[zia.prod]\ncloud = "zscloud.net"\nauth = "legacy"\napi_key = "k3y-value"\n'
            'username = "u"\npassword = "p4ssword"\n'
            '[instances.imp]\nmimecast = "main"\nzia = "prod"\ncategory = "Cat"\n'
            'sources = ["malicious_domains"]\n'
        )
        monkeypatch.setenv(
            "THREATSHARE_INSTANCES__IMP__NOTIFY", '["https://example.webhook.office.com/x/y"]'
        )
        config = load(path)
        assert config.settings.admins == [
            "https://hooks.slack.com/services/T0/B0/from-a-file",
            "soc@example.com",
        ]
        assert config.instances["imp"].notify == ["https://example.webhook.office.com/x/y"]

    @pytest.mark.parametrize(
        ("url", "shape"),
        [
            ("https://hooks.slack.com/services/T0/B0/x", "slack"),
            ("https://acme.webhook.office.com/webhookb2/x", "teams"),
            ("https://prod-01.westeurope.logic.azure.com/workflows/x", "teams"),
            ("https://events.example.net/alerts", "json"),
            ("http://127.0.0.1:8080/relay#slack", "slack"),
            ("https://hooks.slack.com.evil.example/x", "json"),
        ],
    )
    def test_the_shape_follows_the_host_or_the_fragment(self, url: str, shape: str) -> None:
        """Slack's and Microsoft's hosts choose their shapes, a fragment overrides, anything
        else (a look-alike host too) is generic JSON."""
        assert webhook_shape(url) == shape


class TestThroughTheOutbox:
    def test_one_message_per_incident_through_a_receiver_outage(
        self, outbox: Outbox, clock: Clock, receiver: WebhookReceiver, redis_client: redis.Redis
    ) -> None:
        """Receiver down: the alert waits; back up: it arrives once, and the same incident seen
        again (by another process too) sends nothing more."""
        config = _config([receiver.url("/hook#json")])
        receiver.stop()
        assert outbox.put(_alert(config), "incident-1")
        assert not Outbox(redis_client, clock=clock).put(_alert(config), "incident-1")
        with capture_logs() as logs:
            assert outbox.deliver_for(config) == Delivery(sent=0, waiting=1, failed=1)
        failed = [e for e in logs if e["event"] == "alert_delivery_failed"]
        assert failed and failed[0]["webhook"] == webhook_ref(receiver.url("/hook#json"))
        clock.now += 10
        assert outbox.deliver_for(config) == Delivery(sent=0, waiting=1)  # not due yet
        receiver.start()
        clock.now += 30
        assert outbox.deliver_for(config) == Delivery(sent=1, waiting=0)
        assert outbox.deliver_for(config) == Delivery(sent=0, waiting=0)
        assert not outbox.put(_alert(config), "incident-1")
        assert [r.path for r in receiver.received] == ["/hook"]

    def test_a_receiver_answering_5xx_is_retried_and_404_gives_up_loudly(
        self, outbox: Outbox, clock: Clock, receiver: WebhookReceiver
    ) -> None:
        """503 means later (the alert waits); 404 (a deleted webhook) drops it with an error."""
        config = _config([receiver.url()])
        outbox.put(_alert(config), "incident-1")
        receiver.status = 503
        assert outbox.deliver_for(config) == Delivery(sent=0, waiting=1, failed=1)
        receiver.status = 404
        clock.now += 31
        with capture_logs() as logs:
            assert outbox.deliver_for(config) == Delivery(sent=0, waiting=0, dropped=1)
        [dropped] = [e for e in logs if e["event"] == "alert_dropped"]
        assert dropped["log_level"] == "error" and "404" in dropped["reason"]
        assert len(receiver.received) == 2

    def test_a_webhook_down_delays_neither_email_nor_another_webhook(
        self, outbox: Outbox, receiver: WebhookReceiver
    ) -> None:
        """Each channel is delivered on its own: one receiver failing holds back only itself."""
        with SmtpSink() as sink, WebhookReceiver() as other:
            smtp = {
                "host": "127.0.0.1",
                "port": sink.port,
                "security": "none",
                "sender": "threatshare@example.com",
                "timeout": "2s",
            }
            config = _config(
                ["secops@example.com", receiver.url("/down"), other.url("/teams#teams")], **smtp
            )
            receiver.status = 500
            outbox.put(_alert(config), "incident-1")
            outbox.put(_alert(config, "recovered"), "incident-1")
            delivery = outbox.deliver_for(config)
            assert delivery == Delivery(sent=4, waiting=2, failed=1)
            assert [str(m.message["Subject"]) for m in sink.messages] == [
                "[threatshare] impersonation halted: zia_auth",
                "[threatshare] impersonation recovered",
            ]
            assert len(other.received) == 2
        assert len(receiver.received) == 1  # the recovery waits behind its halt

    def test_a_webhook_removed_from_the_configuration_is_dropped(
        self, outbox: Outbox, receiver: WebhookReceiver
    ) -> None:
        """An alert for a webhook no longer configured cannot be resolved: dropped, logged."""
        outbox.put(_alert(_config([receiver.url()])), "incident-1")
        with capture_logs() as logs:
            delivery = outbox.deliver_for(_config(["secops@example.com"]))
        assert delivery == Delivery(sent=0, waiting=0, dropped=1)
        assert [e["reason"] for e in logs if e["event"] == "alert_dropped"] == [
            "webhook no longer configured"
        ]
        assert receiver.received == []

    def test_the_outbox_bound_holds_for_webhook_alerts(
        self, redis_client: redis.Redis, clock: Clock, receiver: WebhookReceiver
    ) -> None:
        """Webhook entries count against the bound: the oldest non-halt ones go first."""
        box = Outbox(redis_client, max_pending=3, clock=clock)
        config = _config([receiver.url()])
        box.put(_alert(config), "halt")
        for number in range(5):
            box.put(_alert(config, "recovered"), f"incident-{number}")
        assert box.pending() == 3

    def test_no_secret_reaches_the_receiver_redis_or_the_logs(
        self, outbox: Outbox, clock: Clock, receiver: WebhookReceiver, redis_client: redis.Redis
    ) -> None:
        """A message quoting the webhook URL and a client secret reaches the receiver masked;
        the URL is never stored in Redis nor logged, failed delivery included."""
        url = receiver.url("/services/T0/B0/tok3n-in-the-url")
        config = _config([url])
        echo = f"rejected {CLIENT_SECRET} at {url}"
        outbox.put(_alert(config, message=echo), "incident-1")
        receiver.status = 502
        with capture_logs() as logs:
            outbox.deliver_for(config)
            receiver.status = 200
            clock.now += 31
            assert outbox.deliver_for(config).sent == 1
        assert "tok3n-in-the-url" not in _everything_in_redis(redis_client)
        assert "tok3n-in-the-url" not in repr(logs)
        [body] = [r.body.decode() for r in receiver.received[1:]]
        assert CLIENT_SECRET not in body and "tok3n-in-the-url" not in body
        assert "**********" in body


class TestShapes:
    def _one(self, outbox: Outbox, receiver: WebhookReceiver, fragment: str) -> dict[str, Any]:
        config = _config([receiver.url("/h" + fragment)])
        outbox.put(_alert(config), "incident-1")
        assert outbox.deliver_for(config).sent == 1
        [received] = receiver.received
        assert received.headers["Content-Type"] == "application/json"
        document: dict[str, Any] = received.json()
        return document

    def test_slack_gets_text_with_its_markup_neutralised(
        self, outbox: Outbox, receiver: WebhookReceiver
    ) -> None:
        """Slack: a `text` with the subject in bold and the body in a code block; <, >, & and
        code fences from upstream text cannot mention @channel or escape the block."""
        document = self._one(outbox, receiver, "#slack")
        text = document["text"]
        assert text.startswith("*[threatshare] impersonation halted: zia_auth*\n```\n")
        assert text.endswith("\n```") and text.count("```") == 2
        assert "<!channel>" not in text and "&lt;!channel&gt;" in text
        assert "hxxps://evil[.]example[.]com/login" in text and "https://evil" not in text
        assert "\x1b" not in text
        assert "threatshare resume impersonation" in text
        assert document["unfurl_links"] is False

    def test_teams_gets_an_adaptive_card(self, outbox: Outbox, receiver: WebhookReceiver) -> None:
        """Teams: a message with one Adaptive Card whose first block is the subject and whose
        lines are the e-mail's body, defanged."""
        document = self._one(outbox, receiver, "#teams")
        assert document["type"] == "message"
        [attachment] = document["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        card = attachment["content"]
        assert card["type"] == "AdaptiveCard"
        texts = [block["text"] for block in card["body"]]
        assert texts[0] == "[threatshare] impersonation halted: zia_auth"
        assert "  threatshare resume impersonation" in texts
        assert any("hxxps://evil[.]example[.]com/login" in t for t in texts)

    def test_generic_json_carries_the_alert_fields(
        self, outbox: Outbox, receiver: WebhookReceiver
    ) -> None:
        """Generic: the alert's fields by name (defanged, cleaned), the remedy, the resume
        command and the full text; no recipients."""
        document = self._one(outbox, receiver, "")
        assert document["kind"] == "halted"
        assert document["instance"] == "impersonation"
        assert document["zia_tenant"] == "prod" and document["code"] == "zia_auth"
        assert document["message"].endswith("hxxp://evil[.]example[.]com/login [31m")
        assert document["indicators"] == ["hxxps://evil[.]example[.]com/login"]
        assert document["resume"] == "threatshare resume impersonation"
        assert document["remedy"] and document["since"] == "2024-05-10T09:00:00+00:00"
        assert "recipients" not in document
        assert document["text"].startswith("threatshare halted the instance impersonation")


def test_a_real_run_posts_one_halt_per_incident_to_each_webhook(
    tmp_path: Path, redis_url: str
) -> None:
    """Two `run --once` with a revoked ZIA client: the halted instance's Slack and generic
    webhooks each get one halt message, the e-mail goes as before, and no run repeats them."""
    with Sandbox(tenant_names=("prod", "lab")) as sandbox, WebhookReceiver() as receiver:
        seed(sandbox)
        world = World(sandbox, tmp_path, redis_url)
        sandbox.idp.revoke(sandbox.tenants["lab"].client_id)
        instances = {**INSTANCES, "lab": {**INSTANCES["lab"]}}
        instances["lab"]["notify"] = ["mailto:lab@example.com", receiver.url("/slack#slack")]
        config = world.write(
            instances, settings={"log_format": "json"}, admins=[receiver.url("/oncall")]
        )
        for _ in range(2):
            done = cli(config, "run", "--once")
            assert done.returncode == 1, done.stderr
        paths = sorted(r.path for r in receiver.received)
        assert paths == ["/oncall", "/slack"]
        [oncall] = [r.json() for r in receiver.received if r.path == "/oncall"]
        assert (oncall["kind"], oncall["instance"]) == ("halted", "lab")
        [slack] = [r.json() for r in receiver.received if r.path == "/slack"]
        assert slack["text"].startswith("*[threatshare] lab halted:")
        assert [
            m.envelope_to
            for m in sandbox.smtp.messages
            if "lab halted" in str(m.message["Subject"])
        ] == [("lab@example.com",)]
        for url in (receiver.url("/slack"), receiver.url("/oncall")):
            assert url not in done.stdout + done.stderr
