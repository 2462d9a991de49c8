"""The rate arithmetic of the Graph budget, without a database."""
from __future__ import annotations

import pytest

from app.adapters.budget import DEFAULT_LIMITS, MAX_BACKOFF_SECONDS, Limit, backoff_seconds, spend, wait_needed
from app.adapters.store import BudgetState


def state(**kw) -> BudgetState:
    values = dict(category="reports", tokens=0.0, updated_at=0.0, stamps=[], blocked_until=0.0, fresh=True)
    values.update(kw)
    return BudgetState(**values)


def test_documented_limits_are_the_defaults():
    assert DEFAULT_LIMITS["reports"] == Limit(5, 10.0, "window")  # 5 requests per 10 s per app per tenant
    assert DEFAULT_LIMITS["directory"].kind == "bucket" and DEFAULT_LIMITS["directory"].rate <= 350


def test_window_allows_capacity_then_waits_for_the_oldest_to_leave():
    limit, s = Limit(5, 10.0), state()
    for t in (0.0, 1.0, 2.0, 3.0, 4.0):
        assert wait_needed(s, limit, 1, t) == 0
        spend(s, limit, 1, t)
    assert wait_needed(s, limit, 1, 4.5) == pytest.approx(5.5)  # the 0.0 stamp leaves at 10.0
    assert wait_needed(s, limit, 2, 4.5) == pytest.approx(6.5)  # two must leave: 0.0 and 1.0
    assert wait_needed(s, limit, 1, 10.0) == 0


def test_window_never_lets_more_than_capacity_into_any_span():
    limit, s, granted, t = Limit(5, 10.0), state(), [], 0.0
    while t < 60:
        if wait_needed(s, limit, 1, t) == 0:
            spend(s, limit, 1, t)
            granted.append(t)
        t += 0.25
    assert all(sum(1 for g in granted if start <= g < start + 10) <= 5 for start in granted)
    assert len(granted) >= 25  # and it does not starve: 5 per 10 s over 60 s


def test_bucket_starts_full_and_refills_at_its_rate():
    limit, s = Limit(10, 10.0, "bucket"), state()
    assert wait_needed(s, limit, 10, 100.0) == 0
    spend(s, limit, 10, 100.0)
    assert wait_needed(s, limit, 1, 100.0) == pytest.approx(1.0)
    assert wait_needed(s, limit, 3, 101.5) == pytest.approx(1.5)  # 1.5 tokens back, 1.5 s for the rest
    assert wait_needed(s, limit, 1, 1000.0) == 0 and s.tokens == 10  # never more than capacity


def test_retry_after_blocks_whatever_the_tokens():
    limit, s = Limit(5, 10.0), state(blocked_until=50.0)
    assert wait_needed(s, limit, 1, 42.0) == pytest.approx(8.0)
    assert wait_needed(s, limit, 1, 50.0) == 0


def test_backoff_honours_retry_after_else_grows_exponentially():
    assert backoff_seconds(0, retry_after=0.5) == 0.5
    assert backoff_seconds(3, retry_after=12) == 12
    assert [backoff_seconds(n) for n in range(4)] == [2.0, 4.0, 8.0, 16.0]
    assert backoff_seconds(30) == MAX_BACKOFF_SECONDS


@pytest.mark.parametrize("capacity,period", [(0, 10), (5, 0), (-1, 1)])
def test_nonsense_limits_are_refused(capacity, period):
    with pytest.raises(ValueError):
        Limit(capacity, period)
