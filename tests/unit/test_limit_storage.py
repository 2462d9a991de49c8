"""The in-process rate-limit counts: a moving window per key, and keys of students who left are dropped."""
from __future__ import annotations

import pytest
from limits import parse
from limits.strategies import MovingWindowRateLimiter

import app.web.limits as limits_module
from app.web.limits import SweptMemoryStorage


@pytest.fixture
def now(monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(limits_module.time, "time", lambda: clock[0])
    return clock


def test_the_moving_window_lets_through_the_limit_and_no_more_until_the_oldest_hit_leaves(now):
    limiter = MovingWindowRateLimiter(SweptMemoryStorage())
    three = parse("3 per minute")
    for second in (0, 10, 20):
        now[0] += second and 10
        assert limiter.hit(three, "upn:ada")
    assert not limiter.hit(three, "upn:ada")
    assert limiter.hit(three, "upn:bob")  # another key has its own window
    stats = limiter.get_window_stats(three, "upn:ada")
    assert stats.remaining == 0 and stats.reset_time == 1_000_000.0 + 60
    now[0] = 1_000_000.0 + 60.5  # the first hit has left the window
    assert limiter.hit(three, "upn:ada") and not limiter.hit(three, "upn:ada")


def test_keys_whose_window_has_passed_are_dropped_once_a_minute(now):
    storage = SweptMemoryStorage()
    limiter = MovingWindowRateLimiter(storage)
    for i in range(1000):
        limiter.hit(parse("120 per minute"), f"upn:student{i}")
    assert len(storage._windows) == 1000
    now[0] += limits_module.SWEEP_SECONDS + 1
    limiter.hit(parse("120 per minute"), "upn:latecomer")
    assert [key.split("/")[1] for key in storage._windows] == ["upn:latecomer"]

