"""A process that spends the shared Graph budget, for the cross-process budget test.

Usage: python -m tests.services.budget_taker DATABASE_URL TAKES
Prints, for each granted request, the budget's own clock reading when it granted it, one a line.
"""
from __future__ import annotations

import sys
import time

from app.adapters.budget import DatabaseBudget, Limit
from app.adapters.store import Store


def main() -> None:
    url, takes = sys.argv[1], int(sys.argv[2])
    readings: list[float] = []

    def clock() -> float:
        readings.append(time.time())
        return readings[-1]

    budget = DatabaseBudget(Store(url), {"reports": Limit(5, 1.0, "window")}, clock=clock)
    for _ in range(takes):
        if budget.take("reports", 1, wait_seconds=30):
            print(f"{readings[-1]:.6f}", flush=True)  # the reading the grant was stamped with


if __name__ == "__main__":
    main()
