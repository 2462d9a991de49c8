"""Graph's throttling: token buckets per app per tenant, with the limits Microsoft documents.

Source: learn.microsoft.com/graph/throttling-limits, "Identity and access reports service limits"
(5 requests per 10 seconds per app per tenant) and "Identity and access service limits" (resource
units per 10 seconds per app+tenant pair: 3,500 for a small tenant under 50 users, 5,000 for a
medium one up to 500 users, 8,000 above; a request costs 1 unit unless the cost table says more).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass

REPORTS_LIMIT = 5
WINDOW_SECONDS = 10.0
REPORT_PATH_PREFIXES = ("/auditlogs/", "/reports/")


def directory_limit_for(tenant_users: int) -> int:
    """Return the directory-read bucket (resource units per 10 s) for a tenant of this size."""
    if tenant_users < 50:
        return 3500
    if tenant_users <= 500:
        return 5000
    return 8000


def category_of(graph_path: str) -> str:
    """Sort a Graph path (after /v1.0) into the service whose limit applies."""
    return "reports" if graph_path.lower().startswith(REPORT_PATH_PREFIXES) else "directory"


@dataclass
class _Bucket:
    capacity: float
    tokens: float
    updated: float


class Throttle:
    """Token buckets keyed by (category, app id, tenant id); each bucket refills over a 10 s window."""

    def __init__(self, directory_limit: int = 3500, reports_limit: int = REPORTS_LIMIT,
                 window_seconds: float = WINDOW_SECONDS):
        self.limits = {"directory": directory_limit, "reports": reports_limit}
        self.window_seconds = window_seconds
        self._buckets: dict[tuple[str, str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, category: str, app_id: str, tenant_id: str, now: float, cost: float = 1.0) -> float | None:
        """Spend `cost` units; return None if allowed, else the seconds to wait (Retry-After)."""
        capacity = self.limits[category]
        rate = capacity / self.window_seconds
        with self._lock:
            bucket = self._buckets.get((category, app_id, tenant_id))
            if bucket is None or bucket.capacity != capacity:
                bucket = self._buckets[(category, app_id, tenant_id)] = _Bucket(capacity, capacity, now)
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= cost:
                bucket.tokens -= cost
                return None
            # Graph's Retry-After is the time until the bucket has room, in seconds with fractions ("2.128").
            return max(0.001, math.ceil((cost - bucket.tokens) / rate * 1000) / 1000)

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
