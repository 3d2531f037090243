"""Pacing of a tenant's activations and the round of its instances, with the clock as an input."""

from __future__ import annotations

import pytest

from workers.pacing import (
    ACTIVATIONS_PER_HOUR,
    HOUR,
    PACE_FROM,
    PACED_GAP,
    ROUND_LEAD,
    ROUND_WAIT,
    TenantActivations,
    activation_due,
    budget_wait,
    recent_from_log,
    round_for,
)

NOW = 1_800_000_000.0


def paced_log(newest_age: float, count: int = 30, gap: float = PACED_GAP) -> list[float]:
    """``count`` activations ``gap`` apart, the newest ``newest_age`` seconds before NOW."""
    return [NOW - newest_age - gap * k for k in range(count)]


def full_hour(newest_age: float) -> list[float]:
    """ZIA's whole budget in the last hour: 40 activations, one per 90 s."""
    return paced_log(newest_age, ACTIVATIONS_PER_HOUR, HOUR / ACTIVATIONS_PER_HOUR)


class TestLog:
    def test_the_log_gives_count_age_and_the_newest(self) -> None:
        """Only the last hour counts; the newest call gives the age and the time of the last."""
        recent = recent_from_log([NOW - 5000.0, NOW - 700.0, NOW - 30.0], NOW)
        assert recent == TenantActivations(2, 30.0, 0.0, NOW - 30.0)

    def test_an_empty_log_is_an_unpaced_tenant(self) -> None:
        """No activation in the last hour: nothing to wait for, and no round."""
        recent = recent_from_log([NOW - HOUR - 1], NOW)
        assert recent == TenantActivations(0, None)
        assert budget_wait(recent) == 0.0 and round_for(recent) is None

    def test_a_full_hour_frees_when_its_oldest_call_leaves(self) -> None:
        """40 in the hour: the next is allowed when the oldest is an hour old, not before."""
        recent = recent_from_log(full_hour(newest_age=40.0), NOW)
        oldest_age = 40.0 + 39 * 90.0
        assert recent.last_hour == ACTIVATIONS_PER_HOUR
        assert recent.hour_frees_in == pytest.approx(HOUR - oldest_age)
        assert budget_wait(recent) == pytest.approx(max(HOUR - oldest_age, PACED_GAP - 40.0))
        assert not activation_due(recent)


class TestPacing:
    def test_below_half_the_budget_activations_are_free(self) -> None:
        """Under PACE_FROM activations in the hour, a marked tenant is activated at once."""
        recent = recent_from_log(paced_log(1.0, PACE_FROM - 1), NOW)
        assert not recent.paced
        assert activation_due(recent) and round_for(recent) is None

    @pytest.mark.parametrize("age", [1.0, PACED_GAP / 2, PACED_GAP - 0.5])
    def test_a_paced_tenant_waits_for_its_gap(self, age: float) -> None:
        """From PACE_FROM on, the next activation waits until PACED_GAP after the last."""
        recent = recent_from_log(paced_log(age), NOW)
        assert budget_wait(recent) == pytest.approx(PACED_GAP - age)
        assert not activation_due(recent)
        assert activation_due(recent_from_log(paced_log(PACED_GAP), NOW))

    def test_the_paced_rate_stays_under_the_hourly_budget(self) -> None:
        """An activation every PACED_GAP never puts 40 in one hour."""
        assert HOUR / PACED_GAP < ACTIVATIONS_PER_HOUR


class TestRound:
    def test_the_round_starts_its_lead_before_the_activation(self) -> None:
        """A paced tenant's round is due ROUND_LEAD before its next activation is allowed, for
        that whole span, and not before it or once the activation is allowed."""
        start = PACED_GAP - ROUND_LEAD
        assert round_for(recent_from_log(paced_log(start - 0.5), NOW)) is None
        for age in (start, start + ROUND_LEAD / 2, PACED_GAP - 0.1):
            found = round_for(recent_from_log(paced_log(age), NOW))
            assert found is not None and found.activation_in == pytest.approx(PACED_GAP - age)
        assert round_for(recent_from_log(paced_log(PACED_GAP), NOW)) is None
        assert round_for(recent_from_log(paced_log(PACED_GAP + 30.0), NOW)) is None

    def test_every_clock_reading_of_a_round_names_it_alike(self) -> None:
        """Schedulers reading the clock at different instants of one round agree on its name,
        the second of the activation it follows; the next activation names the next round."""
        log = paced_log(0.0)
        early = round_for(recent_from_log(log, NOW + PACED_GAP - ROUND_LEAD))
        late = round_for(recent_from_log(log, NOW + PACED_GAP - 1.0))
        assert early is not None and late is not None
        assert early.cycle == late.cycle == int(NOW)
        after = round_for(recent_from_log([*log, NOW + PACED_GAP], NOW + 2 * PACED_GAP - 5.0))
        assert after is not None and after.cycle == int(NOW + PACED_GAP)

    def test_a_full_hour_rounds_up_to_its_oldest_leaving(self) -> None:
        """With the hour full, the round comes ROUND_LEAD before the oldest call leaves it,
        though the gap since the last one has long passed."""
        log = [NOW - 100.0] + [NOW - 3590.0 + k for k in range(ACTIVATIONS_PER_HOUR - 1)]
        too_early = round_for(recent_from_log(log, NOW - ROUND_LEAD))
        assert too_early is None
        found = round_for(recent_from_log(log, NOW + ROUND_LEAD / 2))
        assert found is not None and found.activation_in == pytest.approx(ROUND_LEAD / 2)
        assert found.cycle == int(NOW - 100.0)


class TestActivationAfterTheRound:
    def test_an_allowed_activation_waits_for_its_round(self) -> None:
        """Once allowed, a paced activation waits while its round's jobs are pending."""
        recent = recent_from_log(paced_log(PACED_GAP + 1.0), NOW)
        assert activation_due(recent, round_pending=False)
        assert not activation_due(recent, round_pending=True)

    def test_a_slow_round_holds_the_activation_only_so_long(self) -> None:
        """ROUND_WAIT after it was allowed, the activation goes ahead without the stragglers."""
        recent = recent_from_log(paced_log(PACED_GAP + ROUND_WAIT), NOW)
        assert activation_due(recent, round_pending=True)

    def test_a_pending_round_never_hastens_an_activation(self) -> None:
        """Before the gap has passed, no activation is due, round or no round."""
        recent = recent_from_log(paced_log(PACED_GAP - 1.0), NOW)
        assert not activation_due(recent, round_pending=False)
        assert not activation_due(recent, round_pending=True)
