"""The Graph rate governor: one budget per throttling category, shared by every process through the database.

Limits (learn.microsoft.com/graph/throttling-limits): identity and access reports allow 5 requests per
10 s per app per tenant; directory reads are a token bucket of 3,500 to 8,000 units per 10 s by tenant
size. A 429's Retry-After blocks the category for every instance (back_off).
"""
from __future__ import annotations

import math
import time
from typing import Callable, Mapping

from app.adapters.store import BudgetState, Store
from app.domain.ports import DEFAULT_LIMITS, DIRECTORY, REPORTS, Limit  # noqa: F401 - importers of the budget use them

# Without a Retry-After, back off exponentially from this, up to the cap.
DEFAULT_BACKOFF_SECONDS = 2.0
MAX_BACKOFF_SECONDS = 120.0


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """Return how long to wait: Retry-After when Graph gave one, else exponential from 2 s, capped."""
    if retry_after is not None and retry_after >= 0:
        return float(retry_after)
    return min(MAX_BACKOFF_SECONDS, DEFAULT_BACKOFF_SECONDS * (2 ** max(0, attempt)))


def wait_needed(state: BudgetState, limit: Limit, count: int, now: float) -> float:
    """Return seconds until `count` requests fit (0 = now), updating the state's refill; pure."""
    if state.blocked_until > now:
        return state.blocked_until - now
    if limit.kind == "window":
        state.stamps = sorted(t for t in state.stamps if t > now - limit.per_seconds)
        free = limit.capacity - len(state.stamps)
        if free >= count:
            return 0.0
        # The (count - free)-th oldest stamp must leave the window first.
        return state.stamps[count - free - 1] + limit.per_seconds - now
    if state.fresh:
        state.tokens, state.fresh = float(limit.capacity), False
    elapsed = max(0.0, now - state.updated_at)
    state.tokens = min(float(limit.capacity), state.tokens + elapsed * limit.rate)
    state.updated_at = now
    if state.tokens >= count:
        return 0.0
    return (count - state.tokens) / limit.rate


def spend(state: BudgetState, limit: Limit, count: int, now: float) -> None:
    """Record `count` requests as spent (after wait_needed said 0)."""
    if limit.kind == "window":
        state.stamps.extend([now] * count)
    else:
        state.tokens -= count
    state.updated_at = now


class DatabaseBudget:
    """RequestBudget over the store: a row per category, locked for each decision, shared by all instances."""

    def __init__(self, store: Store, limits: Mapping[str, Limit] | None = None, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep):
        self.store = store
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self.clock = clock
        self.sleep = sleep

    def take(self, category: str, count: int = 1, wait_seconds: float = 0.0) -> bool:
        """Reserve `count` requests, waiting at most wait_seconds; False (nothing spent) if they do not fit."""
        limit = self._limit(category)
        if not 1 <= count <= limit.capacity:
            raise ValueError(f"cannot take {count} of a {category} budget of {limit.capacity}")
        deadline = self.clock() + max(0.0, wait_seconds)
        while True:
            with self.store.locked_budget(category) as state:
                now = self.clock()
                wait = wait_needed(state, limit, count, now)
                if wait <= 0:
                    spend(state, limit, count, now)
                    return True
            if now + wait > deadline:
                return False
            # Wake a little after the slot frees; another instance may still win it, then we loop.
            self.sleep(min(wait, deadline - now) + 0.01)

    def back_off(self, category: str, seconds: float) -> None:
        """Block a category for everyone until Retry-After has passed (never shortens a longer block)."""
        self._limit(category)
        if not math.isfinite(seconds) or seconds <= 0:
            return
        with self.store.locked_budget(category) as state:
            state.blocked_until = max(state.blocked_until, self.clock() + seconds)

    def blocked_for(self, category: str) -> float:
        """Return seconds until a Retry-After block on a category ends (0 if none)."""
        with self.store.locked_budget(category) as state:
            return max(0.0, state.blocked_until - self.clock())

    def _limit(self, category: str) -> Limit:
        try:
            return self.limits[category]
        except KeyError:
            raise ValueError(f"unknown Graph budget category {category!r}; known: {sorted(self.limits)}") from None


class UnlimitedBudget:
    """A budget that always grants: for unit tests and one-off CLI calls."""

    def take(self, category: str, count: int = 1, wait_seconds: float = 0.0) -> bool:
        return True

    def back_off(self, category: str, seconds: float) -> None:
        pass
