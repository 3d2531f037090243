"""The scheduler's rounds on a real Redis, the clock an input of each tick: which instance runs
before a paced tenant's activation, and which activation follows it."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from rq.job import Job, JobStatus

from threatshare import keys
from threatshare.config import Config
from threatshare.state.activation_marks import ActivationMarks
from workers.pacing import PACED_GAP, ROUND_LEAD, ROUND_WAIT
from workers.scheduler import ACTIVATE_BUCKET, Scheduler, fleet_queue

from .test_scheduler import write_config

SECOND = 1_000_000


@pytest.fixture
def config(tmp_path: Path, redis_url: str) -> Config:
    return write_config(tmp_path, redis_url, interval="60s")


def have_run(client: redis.Redis, *names: str) -> None:
    """Record ``names`` as instances whose last run was ok (what a run's success writes)."""
    for name in names:
        client.hset(keys.instance_state(name), "state", "ok")


@pytest.fixture(autouse=True)
def established(redis_client: redis.Redis) -> None:
    """The instances of these tests have had their first run, as in a paced fleet."""
    have_run(redis_client, "a", "b")


@pytest.fixture
def base(redis_client: redis.Redis) -> int:
    """The instant (µs, whole second) of the paced tenant's newest activation."""
    return int(redis_client.time()[0]) * SECOND


def log_activations(client: redis.Redis, tenant_id: str, newest_us: int, count: int) -> None:
    """``count`` activations PACED_GAP apart in the limiter's log, the newest at ``newest_us``."""
    gap = round(PACED_GAP * SECOND)
    scores = {f"past-{k}": newest_us - k * gap for k in range(count)}
    client.zadd(keys.tenant_limit(tenant_id, ACTIVATE_BUCKET), scores)


def at(base: int, seconds: float) -> int:
    return base + round(seconds * SECOND)


def kinds(job_ids: list[str], prefix: str) -> list[str]:
    return [job_id for job_id in job_ids if job_id.startswith(prefix)]


def finish(client: redis.Redis, job_ids: list[str]) -> None:
    serializer = fleet_queue(client).serializer
    for job in Job.fetch_many(job_ids, connection=client, serializer=serializer):
        assert job is not None
        job.set_status(JobStatus.FINISHED)


def paced_and_marked(config: Config, client: redis.Redis, base: int) -> tuple[str, Scheduler]:
    """Tenant prod paced (30 activations, the newest at ``base``) with changes to activate."""
    prod = config.zia["prod"].tenant_id
    log_activations(client, prod, base, 30)
    ActivationMarks(client).mark_unactivated(prod)
    return prod, Scheduler(config, client)


class TestWhichInstanceRunsWhen:
    def test_a_paced_tenant_runs_its_instances_just_before_its_activation(
        self, config: Config, redis_client: redis.Redis, base: int
    ) -> None:
        """ROUND_LEAD before a paced tenant's next activation, its enabled instances (and only
        theirs) get a run named after the round, at the front of the queue; not a second before."""
        prod = config.zia["prod"].tenant_id
        log_activations(redis_client, prod, base, 30)
        scheduler = Scheduler(config, redis_client)
        early = scheduler.tick(at(base, PACED_GAP - ROUND_LEAD - 1))
        assert kinds(early, "round-") == []
        due = scheduler.tick(at(base, PACED_GAP - ROUND_LEAD + 1))
        assert kinds(due, "round-") == [keys.round_slot("a", base // SECOND)]
        assert fleet_queue(redis_client).get_job_ids()[0] == keys.round_slot("a", base // SECOND)
        assert kinds(early, "sync-"), "interval slots go on as before"

    def test_schedulers_enqueue_a_round_once(
        self, config: Config, redis_client: redis.Redis, base: int
    ) -> None:
        """Two schedulers ticking at different instants of one round queue its run once."""
        log_activations(redis_client, config.zia["prod"].tenant_id, base, 30)
        first, second = Scheduler(config, redis_client), Scheduler(config, redis_client)
        won = [
            *first.tick(at(base, PACED_GAP - ROUND_LEAD + 0.5)),
            *second.tick(at(base, PACED_GAP - 2)),
            *first.tick(at(base, PACED_GAP - 1)),
        ]
        assert kinds(won, "round-") == [keys.round_slot("a", base // SECOND)]

    def test_the_next_activation_opens_the_next_round(
        self, config: Config, redis_client: redis.Redis, base: int
    ) -> None:
        """After the tenant's next activation, the round before the one after it is a new one."""
        prod = config.zia["prod"].tenant_id
        log_activations(redis_client, prod, base, 30)
        scheduler = Scheduler(config, redis_client)
        scheduler.tick(at(base, PACED_GAP - ROUND_LEAD + 1))
        newer = at(base, PACED_GAP)
        log_activations(redis_client, prod, newer, 1)
        again = scheduler.tick(at(base, 2 * PACED_GAP - ROUND_LEAD + 1))
        assert kinds(again, "round-") == [keys.round_slot("a", newer // SECOND)]

    def test_an_instance_never_run_is_left_out_of_its_tenants_round(
        self, config: Config, redis_client: redis.Redis, base: int
    ) -> None:
        """An instance of a paced tenant that never ran gets no round run (its first run is
        its slot's job, at the front); once its run was ok, the next round takes it."""
        prod = config.zia["prod"].tenant_id
        redis_client.delete(keys.instance_state("a"))
        log_activations(redis_client, prod, base, 30)
        scheduler = Scheduler(config, redis_client)
        first = scheduler.tick(at(base, PACED_GAP - ROUND_LEAD + 1))
        assert kinds(first, "round-") == []
        assert kinds(first, "sync-a-"), "its first run is queued in its slot"
        have_run(redis_client, "a")
        newer = at(base, PACED_GAP)
        log_activations(redis_client, prod, newer, 1)
        again = scheduler.tick(at(base, 2 * PACED_GAP - ROUND_LEAD + 1))
        assert kinds(again, "round-") == [keys.round_slot("a", newer // SECOND)]

    def test_an_unpaced_tenant_has_no_round(
        self, config: Config, redis_client: redis.Redis, base: int
    ) -> None:
        """A tenant with budget to spare gets no round: its changes are activated at once."""
        log_activations(redis_client, config.zia["prod"].tenant_id, base, 5)
        scheduler = Scheduler(config, redis_client)
        for seconds in (1, PACED_GAP - ROUND_LEAD + 1, PACED_GAP - 1):
            assert kinds(scheduler.tick(at(base, seconds)), "round-") == []

    def test_no_round_once_the_activation_is_allowed(
        self, config: Config, redis_client: redis.Redis, base: int
    ) -> None:
        """Past the gap with nothing activated, no round is enqueued any more."""
        log_activations(redis_client, config.zia["prod"].tenant_id, base, 30)
        scheduler = Scheduler(config, redis_client)
        assert kinds(scheduler.tick(at(base, PACED_GAP + 1)), "round-") == []


class TestWhichActivationFollows:
    def test_the_activation_follows_the_last_run_of_its_round(
        self, config: Config, redis_client: redis.Redis, base: int
    ) -> None:
        """A marked paced tenant is not activated while its round's run is pending, even with
        the budget allowing it; the tick after the run is done, it is."""
        prod, scheduler = paced_and_marked(config, redis_client, base)
        round_ids = kinds(scheduler.tick(at(base, PACED_GAP - ROUND_LEAD + 1)), "round-")
        assert kinds(scheduler.tick(at(base, PACED_GAP - 1)), "activate-") == []
        assert kinds(scheduler.tick(at(base, PACED_GAP + 1)), "activate-") == []
        finish(redis_client, round_ids)
        now = at(base, PACED_GAP + 2)
        assert kinds(scheduler.tick(now), "activate-") == [
            keys.activation_slot(prod, now // SECOND // 10)
        ]

    def test_a_slow_round_holds_its_activation_only_so_long(
        self, config: Config, redis_client: redis.Redis, base: int
    ) -> None:
        """ROUND_WAIT after the budget allows it, the activation goes ahead without the round."""
        prod, scheduler = paced_and_marked(config, redis_client, base)
        assert kinds(scheduler.tick(at(base, PACED_GAP - ROUND_LEAD + 1)), "round-")
        assert kinds(scheduler.tick(at(base, PACED_GAP + ROUND_WAIT - 1)), "activate-") == []
        late = at(base, PACED_GAP + ROUND_WAIT + 1)
        assert kinds(scheduler.tick(late), "activate-") == [
            keys.activation_slot(prod, late // SECOND // 10)
        ]

    def test_without_a_round_the_allowed_activation_goes_at_once(
        self, config: Config, redis_client: redis.Redis, base: int
    ) -> None:
        """A paced tenant marked after its gap passed, with no round run, is activated at once."""
        prod, scheduler = paced_and_marked(config, redis_client, base)
        now = at(base, PACED_GAP + 30)
        assert kinds(scheduler.tick(now), "activate-") == [
            keys.activation_slot(prod, now // SECOND // 10)
        ]

    def test_the_unpaced_tenant_is_not_held_by_the_paced_one(
        self, config: Config, redis_client: redis.Redis, base: int
    ) -> None:
        """With prod paced and its round pending, a marked lab tenant is activated right away."""
        prod, lab = config.zia["prod"].tenant_id, config.zia["lab"].tenant_id
        log_activations(redis_client, prod, base, 30)
        ActivationMarks(redis_client).mark_unactivated(prod)
        ActivationMarks(redis_client).mark_unactivated(lab)
        scheduler = Scheduler(config, redis_client)
        enqueued = scheduler.tick(at(base, PACED_GAP - ROUND_LEAD + 1))
        assert kinds(enqueued, "activate-") == [
            keys.activation_slot(lab, at(base, PACED_GAP - ROUND_LEAD + 1) // SECOND // 10)
        ]
