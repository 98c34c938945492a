"""The one exponential backoff: doubling, the cap, jitter, reset, and the numbers each user relies on."""
from __future__ import annotations

import math

import pytest

from ems.backoff import Backoff, backoff_delay


def test_delay_doubles_from_the_initial_value_up_to_the_cap() -> None:
    assert [backoff_delay(a, 1.0, 60.0) for a in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [backoff_delay(a, 0.5) for a in range(4)] == [0.5, 1.0, 2.0, 4.0]  # no cap by default


def test_another_factor() -> None:
    assert [backoff_delay(a, 1.0, 100.0, factor=3.0) for a in range(6)] == [1, 3, 9, 27, 81, 100]


def test_an_attempt_far_out_gets_the_cap_without_overflowing() -> None:
    assert backoff_delay(10_000, 0.5, 30.0) == 30.0
    assert backoff_delay(10_000, 0.5) == math.inf


def test_jitter_scales_into_the_range_below_the_delay() -> None:
    assert backoff_delay(3, 0.5, 30.0, jitter=0.5, random_value=0.0) == 2.0  # half of 4 s
    assert backoff_delay(3, 0.5, 30.0, jitter=0.5, random_value=0.5) == 3.0
    assert backoff_delay(3, 0.5, 30.0, jitter=0.5, random_value=0.999999) == pytest.approx(4.0, rel=1e-5)
    # random values outside [0, 1] are clamped
    assert backoff_delay(3, 0.5, 30.0, jitter=0.5, random_value=-3.0) == 2.0
    assert backoff_delay(3, 0.5, 30.0, jitter=0.5, random_value=7.0) == 4.0


def test_backoff_counts_attempts_and_starts_over_on_reset() -> None:
    b = Backoff(1.0, 60.0)
    assert [b.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert b.attempt == 8
    b.reset()
    assert b.attempt == 0
    assert b.next_delay() == 1.0


def test_backoff_draws_one_random_value_per_delay_only_when_jittered() -> None:
    draws = iter([0.0, 1.0, 0.5])
    calls = []

    def rand() -> float:
        calls.append(1)
        return next(draws)

    b = Backoff(0.5, 30.0, jitter=0.5, random=rand)
    assert [b.next_delay() for _ in range(3)] == [0.25, 1.0, 1.5]
    assert len(calls) == 3

    def must_not_be_called() -> float:
        raise AssertionError("no jitter, no random value")

    assert Backoff(2.0, random=must_not_be_called).next_delay() == 2.0


def test_the_numbers_of_each_user() -> None:
    # Supervisor restarts: 1 s, 2 s, 4 s … 60 s.
    from ems import supervisor
    b = Backoff(supervisor.BACKOFF_MIN_S, supervisor.BACKOFF_MAX_S)
    assert [b.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    # Device reconnects: 0.5 s … 30 s, jittered into [50 %, 100 %].
    from ems.devices import poller
    reconnect = [backoff_delay(a, poller.BACKOFF_MIN_S, poller.BACKOFF_MAX_S, jitter=poller.RECONNECT_JITTER, random_value=r)
                 for a, r in [*((a, 1.0) for a in range(8)), (3, 0.0)]]
    assert reconnect == [0.5, 1, 2, 4, 8, 16, 30, 30, 2.0]
    # Price refresh after failures: 60 s doubling up to 30 min.
    from ems.forecast.prices import next_refresh_ts
    now = 1_700_000_000.0  # far from the publication time: only the backoff candidate is earlier than an hour
    delays = [next_refresh_ts(now, n, now + 2 * 86400, "13:00") - now for n in range(1, 8)]
    assert delays[:5] == [60, 120, 240, 480, 960]
    assert delays[5:] == [1800, 1800]
    # HTTP retries: backoff_s, 2·backoff_s … between attempts.
    from ems.forecast.prices import FetchError, with_retries
    slept: list[float] = []

    def failing() -> None:
        raise FetchError("test", "HTTP 503")

    with pytest.raises(FetchError):
        with_retries(failing, 4, 0.25, sleep=slept.append)
    assert slept == [0.25, 0.5, 1.0]
