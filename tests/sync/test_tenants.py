"""End-to-end: ZIA organisations as tenants, refused activations, and the answers the real
ZIA sends, against the emulators, a real Redis and SMTP (docs/design.md#tenant-identity,
docs/design.md#activation)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tests.e2e import INSTANCES, World, expected, seed
from threatshare.ops import status
from threatshare.ops.metrics import families
from threatshare.ops.run_once import run_once
from threatshare.ops.snapshot import take
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.activation_marks import ActivationMarks
from threatshare.state.lock import try_lock
from threatshare.state.store import Store
from threatshare.sync import halt_refused_tenant
from threatshare.sync.activation import activate_pending

PUT = "PUT /urlCategories/{id}"
CATEGORY_PATH = "/urlCategories/{id}"


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[World]:
    with Sandbox(tenant_names=("prod", "lab")) as sandbox:
        seed(sandbox)
        yield World(sandbox, tmp_path, redis_url)


@pytest.fixture
def shared(tmp_path: Path, redis_url: str) -> Iterator[World]:
    """Two organisations behind one API host, as on one ZIA cloud."""
    with Sandbox(tenant_names=("prod", "lab"), shared_host=True) as sandbox:
        seed(sandbox)
        yield World(sandbox, tmp_path, redis_url)


def fresh(world: World, url: str) -> None:
    world.sandbox.mimecast.add_url_logs([url_log(url, datetime.now(UTC) - timedelta(seconds=30))])


def puts(world: World, tenant: str) -> list[int]:
    return [c.status for c in world.sandbox.tenants[tenant].emulator.calls if c.bucket == PUT]


class TestOrganisations:
    def test_two_orgs_behind_one_api_host_are_both_enforced(self, shared: World) -> None:
        """Two [zia.*] tables on one API host with different org ids are two tenants: each
        is activated, so the entries of both are active."""
        config = shared.config()
        prod, lab = config.zia["prod"], config.zia["lab"]
        assert prod.resolved_api_base == lab.resolved_api_base
        assert prod.tenant_id != lab.tenant_id
        results = shared.run(config)
        assert {r.outcome for r in results.values()} == {"ok"}
        for name, inst in INSTANCES.items():
            assert shared.active(config, name) == expected(inst["sources"]), name
        assert shared.sandbox.tenants["prod"].emulator.activations == 1
        assert shared.sandbox.tenants["lab"].emulator.activations == 1

    def test_two_tables_of_one_org_share_one_tenant(self, shared: World) -> None:
        """Two [zia.*] tables that name one organisation are one tenant: one activation."""
        prod = shared.sandbox.tenants["prod"]
        same = {
            "api_base": f"{prod.server.url}/api/v1",
            "client_id": prod.client_id,
            "client_secret": prod.client_secret,
            "scope": prod.scope,
        }
        instances = {
            "all": INSTANCES["all"],
            "lab": {**INSTANCES["lab"], "zia": "lab"},
        }
        config = shared.config(instances, tenant_overrides={"lab": same})
        assert config.zia["prod"].tenant_id == config.zia["lab"].tenant_id
        results = shared.run(config)
        assert {r.outcome for r in results.values()} == {"ok"}
        assert prod.emulator.active_urls("Lab URLs") == expected(["malicious_urls"])
        assert prod.emulator.activations == 1


class TestRefusedActivation:
    def test_a_refused_activation_halts_the_tenant_with_one_mail_each(
        self, world: World, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A 403 to POST /status/activate halts every instance of that tenant with
        activation_refused and one e-mail each; run --once exits 1; status shows the changes
        pending activation (exit 2) and so do the metrics; the other tenant is untouched."""
        world.sandbox.tenants["prod"].emulator.fail_next("403", 1000, path="/status/activate")
        config = world.config()
        client = redis.Redis.from_url(world.redis_url)
        assert run_once(config, client, None) == 1
        assert "ZIA refused the activation" in capsys.readouterr().out
        store = Store(client)
        for name in ("all", "domains"):
            state = store.load(name)
            assert state.state == "halted", name
            assert (state.last_error or {}).get("code") == "activation_refused"
        assert store.load("lab").state == "ok"
        assert world.active(config, "lab") == expected(["malicious_urls"])
        assert world.active(config, "all") == set()
        subjects = sorted(m.message["Subject"] for m in world.mails())
        assert subjects == [
            "[threatshare] all halted: activation_refused",
            "[threatshare] domains halted: activation_refused",
        ]
        assert run_once(config, client, None) == 1  # halted still: no second e-mail
        assert len(world.mails()) == 2

        now = datetime.now(UTC)
        records = status.collect(config, store)
        tenants = {t["zia"][0]: t for t in status.tenant_status(config, store, now)}
        prod = tenants["prod"]
        assert prod["pending_activation"] is True
        assert prod["pending_activation_since"] is not None
        assert prod["activation_refused"]["code"] == "activation_refused"
        assert tenants["lab"]["pending_activation"] is False
        assert status.exit_code(records, list(tenants.values())) == 2
        assert '"tenants"' in status.render_json(records, list(tenants.values()))
        later = status.tenant_status(config, store, now + timedelta(minutes=16))
        assert {t["zia"][0]: t["activation_overdue"] for t in later} == {
            "prod": True,
            "lab": False,
        }

        snapshot = take(config, client, lambda: now + timedelta(minutes=20))
        samples = {
            s.labels["tenant"]: s.value
            for family in families(snapshot)
            if family.name == "threatshare_tenant_activation_pending_seconds"
            for s in family.samples
        }
        assert samples["prod"] >= 19 * 60  # the other organisations wait for nothing: 0
        assert all(v == 0 for t, v in samples.items() if t != "prod")
        client.close()

    def test_pending_too_long_is_a_retrying_level_problem(self, world: World) -> None:
        """Changes waiting more than 15 minutes for activation make status exit 1 even when
        every instance is ok; a later activation clears it."""
        config = world.config({"lab": INSTANCES["lab"]})
        lab = world.sandbox.tenants["lab"].emulator
        # Twelve 503s use up the run's tries (FAST: 12 attempts); the next activation works.
        lab.fail_next("503", 12, path="/status/activate")
        world.run(config)
        client = redis.Redis.from_url(world.redis_url)
        store = Store(client)
        records = status.collect(config, store)
        assert {r["state"] for r in records} == {"ok"}
        soon = status.tenant_status(config, store, datetime.now(UTC))
        assert status.exit_code(records, soon) == 0
        late = status.tenant_status(config, store, datetime.now(UTC) + timedelta(minutes=16))
        assert status.exit_code(records, late) == 1
        assert "(overdue)" in status.render_table(records, tenants=late)
        world.run(config)
        done = status.tenant_status(config, store, datetime.now(UTC) + timedelta(minutes=16))
        assert status.exit_code(records, done) == 0
        assert world.active(config, "lab") == expected(["malicious_urls"])
        client.close()


class TestRealAnswers:
    def test_a_400_naming_no_entry_is_permanent_after_a_handful_of_puts(self, world: World) -> None:
        """A 400 "name cannot be null" to every PUT halts the instance with zia_request after
        three PUTs, not one PUT per entry and an "ok" run."""
        config = world.config({"lab": INSTANCES["lab"]})
        world.run(config)
        for i in range(16):
            fresh(world, f"https://new{i}.example/x")
        before = len(puts(world, "lab"))
        world.sandbox.tenants["lab"].emulator.fail_next("400_field", 1000, path=CATEGORY_PATH)
        results = world.run(config)
        assert results["lab"].state == "halted"
        assert (results["lab"].error or {}).get("code") == "zia_request"
        assert puts(world, "lab")[before:] == [400, 400, 400]
        subjects = [m.message["Subject"] for m in world.mails()]
        assert subjects == ["[threatshare] lab halted: zia_request"]

    def test_duplicate_item_on_create_finds_the_category(self, world: World) -> None:
        """When the category appears between the look-up and the create (ZIA answers 409
        DUPLICATE_ITEM), the run finds it and fills it: one category, entries active."""
        lab = world.sandbox.tenants["lab"].emulator

        def rival(method: str, path: str) -> None:
            if method == "POST" and path.endswith("/urlCategories") and not lab.categories():
                lab.admin_create("Lab URLs", [], "created by another worker")

        lab.before_call = rival
        config = world.config({"lab": INSTANCES["lab"]})
        results = world.run(config)
        assert results["lab"].state == "ok"
        assert [c["configuredName"] for c in lab.categories()] == ["Lab URLs"]
        assert [c.status for c in lab.calls if c.bucket == "POST /urlCategories"] == [409]
        assert world.active(config, "lab") == expected(["malicious_urls"])

    def test_the_gateway_window_on_a_5xx_is_not_waited_for(self, world: World) -> None:
        """A 503 carrying x-ratelimit-reset: 55 (as every real answer does) is retried after
        the normal backoff: the run ends ok in seconds, not after 55."""
        config = world.config({"lab": INSTANCES["lab"]})
        lab = world.sandbox.tenants["lab"].emulator
        lab.gateway_reset = 55
        world.run(config)  # the category is created with its first batch
        fresh(world, "https://later.example/x")
        lab.fail_next("503", path=CATEGORY_PATH)
        start = time.monotonic()
        results = world.run(config)
        assert time.monotonic() - start < 20
        assert results["lab"].state == "ok"
        assert puts(world, "lab")[-2:] == [503, 200]
        assert "later.example/x" in world.active(config, "lab")

    def test_an_org_barrier_412_is_retried(self, world: World) -> None:
        """A 412 "Failed during enter Org barrier" is temporary: retried, and the run ends ok."""
        config = world.config({"lab": INSTANCES["lab"]})
        world.run(config)
        fresh(world, "https://barrier.example/x")
        world.sandbox.tenants["lab"].emulator.fail_next("412", 2, path=CATEGORY_PATH)
        results = world.run(config)
        assert results["lab"].state == "ok"
        assert puts(world, "lab")[-3:] == [412, 412, 200]
        assert "barrier.example/x" in world.active(config, "lab")
        assert world.mails() == []


def test_pending_activation_is_adopted_from_the_former_tenant_id(world: World) -> None:
    """A mark written under a tenant's former id (its API host) is activated after upgrade."""
    config = world.config({"lab": INSTANCES["lab"]})
    world.run(config)
    client = redis.Redis.from_url(world.redis_url)
    marks = ActivationMarks(client)
    marks.mark_unactivated(config.zia["lab"].api_host_id)
    rt = Runtime(config, client)
    try:
        done = activate_pending(rt)
    finally:
        rt.close()
    assert [(a.zia, a.activated) for a in done] == [("lab", True)]
    assert marks.unactivated_tenants() == []
    client.close()


def test_an_instance_whose_run_is_under_way_is_left_to_that_run(world: World) -> None:
    """A refusal does not write over a run in progress (its end would overwrite the halt);
    the other instances of the tenant halt at once."""
    config = world.config()
    client = redis.Redis.from_url(world.redis_url)
    running = try_lock(client, "all", 30)
    assert running is not None
    rt = Runtime(config, client)
    error = {"kind": "permanent", "code": "activation_refused", "message": "HTTP 403"}
    try:
        assert halt_refused_tenant(rt, "prod", error) == ["domains"]
    finally:
        running.release()
        rt.close()
    assert Store(client).load("all").state == "new"
    assert Store(client).load("domains").state == "halted"
    client.close()
