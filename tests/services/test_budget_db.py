"""The Graph budget shared through the database: one governor for every process, SQLite and PostgreSQL."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.adapters.budget import DatabaseBudget, Limit
from app.adapters.store import Store
from app.domain.ports import DIRECTORY, REPORTS

ROOT = Path(__file__).resolve().parents[2]


class ManualTime:
    """Epoch clock and sleep for the budget: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def db_store(database_url):
    s = Store(database_url)
    s.upgrade()
    yield s
    s.dispose()


@pytest.fixture
def manual():
    return ManualTime()


def budget_for(store, manual, **limits):
    return DatabaseBudget(store, limits or None, clock=manual.clock, sleep=manual.sleep)


def test_interactive_caller_gets_a_quick_no_when_reports_are_spent(db_store, manual):
    budget = budget_for(db_store, manual)
    assert [budget.take(REPORTS) for _ in range(6)] == [True] * 5 + [False]
    assert manual.slept == []  # wait_seconds=0: never blocks a person's request


def test_worker_may_wait_for_the_window(db_store, manual):
    budget = budget_for(db_store, manual)
    for _ in range(5):
        budget.take(REPORTS)
    manual.now += 3
    assert budget.take(REPORTS, wait_seconds=10)
    assert sum(manual.slept) == pytest.approx(7.0, abs=0.05)


def test_two_budgets_on_one_database_share_the_limit(db_store, database_url, manual):
    other_store = Store(database_url)  # another instance: its own engine and connections
    first, second = budget_for(db_store, manual), budget_for(other_store, manual)
    assert all(first.take(REPORTS) for _ in range(3))
    assert [second.take(REPORTS) for _ in range(3)] == [True, True, False]
    other_store.dispose()


def test_retry_after_blocks_every_instance(db_store, database_url, manual):
    other_store = Store(database_url)
    budget, other = budget_for(db_store, manual), budget_for(other_store, manual)
    budget.back_off(DIRECTORY, 4.5)
    budget.back_off(DIRECTORY, 1.0)  # a shorter Retry-After never shortens the block
    assert not other.take(DIRECTORY)
    assert other.blocked_for(DIRECTORY) == pytest.approx(4.5)
    assert other.take(DIRECTORY, wait_seconds=5)
    assert manual.slept and sum(manual.slept) >= 4.5
    other_store.dispose()


def test_too_long_retry_after_makes_the_caller_give_up_not_hang(db_store, manual):
    budget = budget_for(db_store, manual)
    budget.back_off(REPORTS, 120)
    assert not budget.take(REPORTS, wait_seconds=2)
    assert sum(manual.slept) <= 2.05


def test_bad_calls_are_refused(db_store, manual):
    budget = budget_for(db_store, manual)
    with pytest.raises(ValueError):
        budget.take("mail")
    with pytest.raises(ValueError):
        budget.take(REPORTS, count=6)
    with pytest.raises(ValueError):
        budget.back_off("mail", 3)
    budget.back_off(REPORTS, float("nan"))  # ignored, not stored
    assert budget.blocked_for(REPORTS) == 0


@pytest.mark.slow
def test_processes_sharing_the_budget_never_exceed_it(database_url):
    Store(database_url).upgrade()
    procs = [subprocess.Popen([sys.executable, "-m", "tests.services.budget_taker", database_url, "5"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    granted = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        granted += [float(line) for line in out.split()]
    granted.sort()
    assert len(granted) == 15
    # 5 per 1 s, from three processes at once: no 1-second span holds more than 5.
    for i, start in enumerate(granted):
        assert sum(1 for t in granted[i:] if t < start + 1.0) <= 5
    assert granted[-1] - granted[0] >= 1.9  # 15 requests at 5/s need at least two more windows
