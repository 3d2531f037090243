"""End-to-end runs of the sync engine against the emulators, a real Redis and SMTP
(docs/design.md#error-policy, docs/design.md#alerts)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
import redis

from tests.e2e import IMPERSONATION_RECORDS, INSTANCES, URL_RECORDS, World, expected, seed
from threatshare import config as config_module
from threatshare import keys
from threatshare.config import Config
from threatshare.runtime import Runtime
from threatshare.sandbox.mimecast_logs import url_log
from threatshare.sandbox.world import Sandbox
from threatshare.state.store import Store
from threatshare.sync import sync_instance


@pytest.fixture
def world(tmp_path: Path, redis_url: str) -> Iterator[World]:
    with Sandbox(tenant_names=("prod", "lab")) as sandbox:
        seed(sandbox)
        yield World(sandbox, tmp_path, redis_url)


class TestHappyPath:
    def test_three_instances_two_tenants_every_source(self, world: World) -> None:
        """After one run each category holds exactly the expected entries, active."""
        config = world.config()
        results = world.run(config)
        assert {r.outcome for r in results.values()} == {"ok"}
        for name, inst in INSTANCES.items():
            assert world.active(config, name) == expected(inst["sources"]), name
        counters = results["all"].counters
        assert counters["skipped_by_reason"]["non_global_address"] == 1
        assert counters["rejected_by_reason"]["unsupported_scheme"] == 1
        assert counters["pulled"] == len(URL_RECORDS) + len(IMPERSONATION_RECORDS)
        assert world.mails() == []

    def test_second_run_pushes_only_new_and_idle_run_calls_nothing(self, world: World) -> None:
        """A second run pushes only what is new; a run with nothing new makes no ZIA call."""
        config = world.config()
        world.run(config)
        world.sandbox.mimecast.add_url_logs(
            [url_log("https://fresh.example/new", datetime.now(UTC) - timedelta(seconds=30))]
        )
        before = world.zia_calls("prod")
        second = world.run(config)
        assert second["all"].counters["pushed"] == 2  # the URL and its host
        assert second["domains"].counters["pushed"] == 0
        assert "fresh.example/new" in world.active(config, "all")
        # The fresh record is re-read (overlap) but already shared: no ZIA call at all.
        calls = world.zia_calls("prod"), world.zia_calls("lab")
        third = world.run(config)
        assert {r.outcome for r in third.values()} == {"ok"}
        assert third["all"].counters["skipped_by_reason"]["already_in_category"] >= 2
        assert (world.zia_calls("prod"), world.zia_calls("lab")) == calls
        assert world.zia_calls("prod") > before

    def test_bookmark_moves_to_window_end(self, world: World) -> None:
        """The bookmark is the end of the last fully shared window."""
        config = world.config()
        start = datetime.now(UTC)
        world.run(config)
        state = Store(redis.Redis.from_url(world.redis_url)).load("all")
        assert state.state == "ok"
        assert state.bookmark is not None and state.bookmark >= start
        assert state.category_id


class TestCategory:
    def test_known_category_is_used_without_look_up(self, world: World) -> None:
        """A second run that pushes uses the stored category id: no GET of categories."""
        config = world.config({"lab": INSTANCES["lab"]})
        world.run(config)
        world.sandbox.mimecast.add_url_logs(
            [url_log("https://second.example/x", datetime.now(UTC) - timedelta(seconds=30))]
        )
        first = world.zia_calls("lab")
        world.run(config)
        calls = world.sandbox.tenants["lab"].emulator.calls[first:]
        assert [(c.method, c.bucket) for c in calls] == [
            ("GET", "GET /urlCategories/urlQuota"),
            ("PUT", "PUT /urlCategories/{id}"),
            ("POST", "POST /status/activate"),
        ]

    def test_deleted_category_is_recreated_with_everything(self, world: World) -> None:
        """If the category is deleted in ZIA, the next push recreates it with every entry."""
        config = world.config({"lab": INSTANCES["lab"]})
        world.run(config)
        zia = world.sandbox.tenants["lab"].emulator
        category_id = next(c["id"] for c in zia.categories() if c["configuredName"] == "Lab URLs")
        tenant = world.sandbox.tenants["lab"]
        access = httpx2.post(
            world.sandbox.token_url,
            data={
                "grant_type": "client_credentials",
                "client_id": tenant.client_id,
                "client_secret": tenant.client_secret,
                "scope": tenant.scope,
            },
        ).json()["access_token"]
        gone = httpx2.delete(
            f"{tenant.server.url}/api/v1/urlCategories/{category_id}",
            headers={"Authorization": f"Bearer {access}"},
        )
        assert gone.status_code in (200, 204), gone.text
        world.sandbox.mimecast.add_url_logs(
            [url_log("https://after-delete.example/x", datetime.now(UTC) - timedelta(seconds=30))]
        )
        results = world.run(config)
        assert results["lab"].state == "ok"
        assert world.active(config, "lab") == expected(["malicious_urls"]) | {
            "after-delete.example/x"
        }


class TestWithdrawal:
    def test_entries_newly_allowed_leave_the_category(self, world: World) -> None:
        """A host added to the allow list is removed from the category on the next run."""
        instance = {**INSTANCES["all"]}
        config = world.config({"all": instance})
        world.run(config)
        assert "evil.example.com/login" in world.active(config, "all")
        allowed = world.config({"all": {**instance, "allow": ["example.com"]}})
        results = world.run(allowed)
        gone = {"evil.example.com/login", "evil.example.com"}
        assert results["all"].counters["removed"] == len(gone)
        assert not gone & world.active(allowed, "all")
        assert world.active(allowed, "all") == expected(instance["sources"]) - gone
        again = world.run(allowed)
        assert again["all"].counters["removed"] == 0


class TestTemporaryFailures:
    def test_thirty_percent_failures_converge_without_mail(self, world: World) -> None:
        """With 30% of Mimecast and ZIA calls failing temporarily, everything lands, no e-mail."""
        config = world.config()
        world.sandbox.mimecast.temporary_failure_rate = 0.3
        for tenant in world.sandbox.tenants.values():
            tenant.emulator.temporary_failure_rate = 0.3
            tenant.emulator.injected_retry_after = 0
        states: dict[str, str] = {}
        for _ in range(8):
            results = world.run(config)
            states = {name: r.state for name, r in results.items()}
            if set(states.values()) == {"ok"}:
                break
        assert set(states.values()) == {"ok"}
        for name, inst in INSTANCES.items():
            assert world.active(config, name) == expected(inst["sources"]), name
        assert world.mails() == []


class TestPermanentFailures:
    def test_revoked_client_halts_its_tenant_only_and_recovers(self, world: World) -> None:
        """A revoked ZIA client halts that tenant's instance with one e-mail; a new secret in the
        configuration resumes it by itself, shares what came meanwhile, and mails once more."""
        lab = world.sandbox.tenants["lab"]
        world.sandbox.idp.revoke(lab.client_id)
        config = world.config()
        for _ in range(3):
            results = world.run(config)
            assert results["lab"].state == "halted"
            assert results["all"].state == "ok"
        halted = [m for m in world.mails() if "halted" in m.message["Subject"]]
        assert len(halted) == 1
        assert halted[0].message["Subject"] == "[threatshare] lab halted: zia_auth"
        assert set(halted[0].envelope_to) == {"lab@example.com", "soc@sandbox.example"}
        # A threat arrives during the outage; then the operator fixes the credentials.
        world.sandbox.mimecast.add_url_logs(
            [url_log("https://during-outage.example/x", datetime.now(UTC) - timedelta(minutes=1))]
        )
        world.sandbox.idp.add_client("zia-lab-new", "new-lab-secret", scope=lab.scope)
        fixed = world.config(
            tenant_overrides={
                "lab": {"client_id": "zia-lab-new", "client_secret": "new-lab-secret"}
            }
        )
        results = world.run(fixed)
        assert results["lab"].state == "ok"
        assert world.active(fixed, "lab") == expected(["malicious_urls"]) | {
            "during-outage.example/x"
        }
        world.run(fixed)
        subjects = [m.message["Subject"] for m in world.mails()]
        assert subjects.count("[threatshare] lab recovered") == 1
        assert subjects.count("[threatshare] lab halted: zia_auth") == 1

    def test_quota_exhausted_then_more_quota_and_resume(self, world: World) -> None:
        """A quota taken by others (capacity 0) halts with quota_exhausted and its e-mail;
        more quota + resume finishes."""
        prod = world.sandbox.tenants["prod"].emulator
        prod.url_quota = 3
        prod.admin_create("Admin Blocks", ["a.example", "b.example", "c.example"])
        instances = {"all": INSTANCES["all"]}
        config = world.config(instances)
        results = world.run(config)
        assert results["all"].state == "halted"
        assert results["all"].error and results["all"].error["code"] == "quota_exhausted"
        assert world.active(config, "all") == set()
        assert [m.message["Subject"] for m in world.mails()] == [
            "[threatshare] all halted: quota_exhausted"
        ]
        world.run(config)  # still halted: skipped, no second e-mail
        assert len(world.mails()) == 1
        prod.url_quota = 25_000
        assert Store(redis.Redis.from_url(world.redis_url)).resume("all")
        results = world.run(config)
        assert results["all"].state == "ok"
        assert world.active(config, "all") == expected(INSTANCES["all"]["sources"])
        assert world.mails()[-1].message["Subject"] == "[threatshare] all recovered"

    def test_mimecast_refusal_is_permanent(self, world: World) -> None:
        """A Mimecast fail[] with retryable false halts the instance with mimecast_request."""
        world.sandbox.mimecast.fail_next("url", "fail_permanent")
        results = world.run(world.config({"lab": INSTANCES["lab"]}))
        assert results["lab"].state == "halted"
        assert results["lab"].error and results["lab"].error["code"] == "mimecast_request"


class TestWindow:
    def test_bookmark_older_than_thirty_days_is_clamped_and_recorded(self, world: World) -> None:
        """An old bookmark starts the window at now − 30 d and records the lost span."""
        config = world.config({"lab": INSTANCES["lab"]})
        client = redis.Redis.from_url(world.redis_url)
        old = datetime.now(UTC) - timedelta(days=45)
        client.hset(keys.instance_state("lab"), mapping={"bookmark": old.isoformat()})
        started = datetime.now(UTC)
        results = world.run(config)
        assert results["lab"].state == "ok"
        state = Store(client).load("lab")
        assert state.lost_span is not None
        assert state.lost_span["from"].startswith(old.date().isoformat())
        # The window asked of Mimecast starts 30 days back, not at the 45-day-old bookmark.
        calls = world.sandbox.mimecast.calls_to("url")
        asked = [c.query["from"] for c in calls if c.query and "from" in c.query]
        start = datetime.strptime(asked[0], "%Y-%m-%dT%H:%M:%S%z")
        assert abs(start - (started - timedelta(days=30))) < timedelta(minutes=1)

    def test_disabled_instance_is_not_run(self, world: World) -> None:
        """An instance with enabled = false is never run and shows as disabled."""
        config = world.config({"lab": {**INSTANCES["lab"], "enabled": False}})
        assert world.run(config) == {}
        assert world.zia_calls("lab") == 0


def two_runs_in_one_process(world: World, config: Config, new_url: str) -> None:
    """Run "lab" twice in one runtime, with a new threat between the runs."""
    rt = Runtime(config, redis.Redis.from_url(world.redis_url))
    try:
        assert sync_instance(rt, "lab").outcome == "ok"
        world.sandbox.mimecast.add_url_logs(
            [url_log(new_url, datetime.now(UTC) - timedelta(seconds=30))]
        )
        assert sync_instance(rt, "lab").counters["pushed"] == 1
    finally:
        rt.close()


class TestRuntime:
    def test_tokens_are_reused_across_runs_of_one_process(self, world: World) -> None:
        """Two runs in one runtime fetch one Mimecast and one ZIA token, not one per run."""
        two_runs_in_one_process(
            world, world.config({"lab": INSTANCES["lab"]}), "https://later.example/x"
        )
        assert world.sandbox.mimecast.tokens_issued == 1
        assert world.sandbox.idp.token_requests == 1

    def test_legacy_session_is_reused_across_runs(self, world: World) -> None:
        """A legacy ZIA tenant is logged in to once for two runs of one process."""
        lab = world.sandbox.tenants["lab"]
        legacy = {
            "auth": "legacy",
            "api_key": lab.api_key,
            "username": lab.username,
            "password": lab.password,
        }
        config = world.config({"lab": INSTANCES["lab"]}, tenant_overrides={"lab": legacy})
        two_runs_in_one_process(world, config, "https://legacy.example/x")
        logins = [c for c in lab.emulator.calls if c.bucket == "POST /authenticatedSession"]
        assert [c.status for c in logins] == [200]
        assert world.sandbox.idp.token_requests == 0
        assert "legacy.example/x" in lab.emulator.staged_urls("Lab URLs")


class TestNewestFirst:
    def test_an_entry_seen_again_ranks_by_its_newest_record(self, world: World) -> None:
        """When the quota is short, an old threat clicked again recently counts as recent."""
        now = datetime.now(UTC)
        world.sandbox.mimecast.add_url_logs(
            [
                url_log("https://old-but-clicked-again.example/a", now - timedelta(hours=5)),
                url_log("https://middle.example/b", now - timedelta(hours=4)),
                url_log("https://old-but-clicked-again.example/a", now - timedelta(minutes=5)),
            ]
        )
        world.sandbox.tenants["lab"].emulator.url_quota = 1
        path = world.write(
            {"lab": {**INSTANCES["lab"], "fetch_from": "6h"}},
            tenant_overrides={"lab": {"quota_reserve": 0}},
        )
        # One record a page: the second sighting comes pages after the first.
        path.write_text(
            path.read_text().replace("[mimecast.main]", "[mimecast.main]\npage_size = 1")
        )
        config = config_module.load(path)
        results = world.run(config)
        assert results["lab"].state == "ok"
        # Room for one: the other five entries of the window (four seeded) are left out.
        assert results["lab"].counters["skipped_by_reason"]["capacity"] == 5
        assert world.active(config, "lab") == {"old-but-clicked-again.example/a"}
