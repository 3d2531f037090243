"""The order of a slot's sync jobs: tenants interleaved, the start rotated, first runs first."""

from __future__ import annotations

from pathlib import Path

import redis

from threatshare import keys
from workers import slots
from workers.scheduler import Scheduler, first_run_queue, fleet_queue

from .test_scheduler import slot_now, write_config


class TestOrder:
    def test_tenants_take_turns(self) -> None:
        """Instances listed tenant by tenant are queued one of each tenant in turn."""
        order = slots.interleaved({"t1": ["a1", "a2", "a3"], "t2": ["b1", "b2"], "t3": ["c1"]})
        assert order == ["a1", "b1", "c1", "a2", "b2", "a3"]

    def test_the_start_moves_with_the_slot_and_nobody_is_left_out(self) -> None:
        """Each slot starts somewhere else in the order, and every instance is in every slot."""
        order = [f"i{n}" for n in range(50)]
        starts = {slots.rotated(order, slot)[0] for slot in range(20)}
        assert len(starts) >= 15
        for slot in range(20):
            assert sorted(slots.rotated(order, slot)) == sorted(order)
        assert slots.rotated([], 3) == []

    def test_new_instances_are_split_off_and_rounds_take_only_runs_that_were_ok(self) -> None:
        """Never-run instances are the first runs; a round takes only instances whose last run
        was ok (not a new, retrying or halted one)."""
        states = {"a": "ok", "b": "retrying", "c": "halted"}
        new, seen = slots.first_runs_first(["a", "n1", "b", "n2", "c"], states)  # type: ignore[arg-type]
        assert (new, seen) == (["n1", "n2"], ["a", "b", "c"])
        assert slots.round_members(["a", "n1", "b", "c"], states) == ["a"]  # type: ignore[arg-type]


class TestQueues:
    def test_a_first_run_goes_on_the_queue_workers_empty_first(
        self, tmp_path: Path, redis_url: str, redis_client: redis.Redis
    ) -> None:
        """An instance never run gets its slot's job on the first-run queue; one that has run
        gets it on the fleet's queue, behind nothing new."""
        config = write_config(tmp_path, redis_url)
        redis_client.hset(keys.instance_state("b"), "state", "ok")
        Scheduler(config, redis_client).tick()
        slot = slot_now(redis_client, 10)
        assert first_run_queue(redis_client).get_job_ids() == [keys.scheduler_slot("a", slot)]
        assert fleet_queue(redis_client).get_job_ids() == [keys.scheduler_slot("b", slot)]
