"""Rate limits (Flask-Limiter) on the views that store a row, write to AD or may ask Graph."""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from functools import wraps
from typing import Callable

from flask import Flask, current_app, jsonify, request
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_limiter import Limiter, RateLimitExceeded
from limits import parse_many
from limits.storage import MovingWindowSupport, Storage
from limits.strategies import MovingWindowRateLimiter

from app.config import Settings
from app.web import client_address, signed_in_upn
from app.web.errors import error_page, wait_words

TOO_MANY = _l("Please slow down")
STATUS_ENDPOINTS = ("student.status", "student.check_now")  # they answer the guide page's poller in JSON
STATUS_SCOPE = "status"  # one counter for the poll and "check now": both may end in a Graph check
KEY_PREFIX = "proofup"
# After Redis fails, the poll counts in this process for this long before it asks Redis again.
REDIS_RETRY_SECONDS = 30.0
log = logging.getLogger(__name__)


# How often the in-process counts drop the keys whose window has passed (students who stopped polling).
SWEEP_SECONDS = 60.0


class SweptMemoryStorage(Storage, MovingWindowSupport):
    """In-process moving-window counts that cost the same after 20,000 students as after one.

    limits' own memory storage starts a timer thread every 10 ms while requests come in and each time walks
    every key it ever saw (a key per student): under load that is a thread per 10 ms per worker, and after
    20,000 students the walks take the portal's time. Here a request trims only its own key, and the keys
    whose newest entry has left its window are dropped inline at most once a minute.
    """

    STORAGE_SCHEME = ["proofup-memory"]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._windows: dict[str, tuple[float, deque[float]]] = {}  # key -> (expiry seconds, hit times, oldest first)
        self._counters: dict[str, tuple[float, int]] = {}  # key -> (end of window, count): fixed windows
        self._guard = threading.Lock()
        self._next_sweep = time.time() + SWEEP_SECONDS

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        """Record `amount` hits in the moving window if it has room for them; tell whether it had."""
        now = time.time()
        with self._guard:
            self._sweep(now)
            _, hits = self._windows.setdefault(key, (expiry, deque()))
            _trim(hits, now - expiry)
            if len(hits) + amount > limit:
                return False
            hits.extend([now] * amount)
            return True

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        """Return the oldest hit still in the window (now if none) and how many hits it holds."""
        now = time.time()
        with self._guard:
            _, hits = self._windows.get(key, (expiry, deque()))
            _trim(hits, now - expiry)
            return (hits[0], len(hits)) if hits else (now, 0)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Count hits in a fixed window (the other strategies; the portal's limits use the moving window)."""
        now = time.time()
        with self._guard:
            self._sweep(now)
            ends, count = self._counters.get(key, (0.0, 0))
            if ends <= now:
                ends, count = now + expiry, 0
            self._counters[key] = (ends, count + amount)
            return count + amount

    def get(self, key: str) -> int:
        ends, count = self._counters.get(key, (0.0, 0))
        return count if ends > time.time() else 0

    def get_expiry(self, key: str) -> float:
        ends, _ = self._counters.get(key, (0.0, 0))
        return max(ends, time.time())

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._guard:
            dropped = len(self._windows) + len(self._counters)
            self._windows.clear()
            self._counters.clear()
        return dropped

    def clear(self, key: str) -> None:
        with self._guard:
            self._windows.pop(key, None)
            self._counters.pop(key, None)

    def _sweep(self, now: float) -> None:
        # Called with the guard held: one walk over the keys a minute, however many requests come in.
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        self._windows = {key: (expiry, hits) for key, (expiry, hits) in self._windows.items()
                         if hits and hits[-1] > now - expiry}
        self._counters = {key: value for key, value in self._counters.items() if value[0] > now}


def _trim(hits: deque[float], since: float) -> None:
    """Drop the hits at or before `since` from the left of an oldest-first window."""
    while hits and hits[0] <= since:
        hits.popleft()


def kiosk_or_address() -> str:
    """Key a limit on the enrolled kiosk making the request, else on the client address.

    A room of kiosks behind one address must not share one counter, nor an unenrolled browser beside them
    escape its own: only a working kiosk credential (checked against the store) moves a request off the address.
    """
    from app.web.kiosk import current_kiosk

    kiosk = current_kiosk()
    return f"kiosk:{kiosk.id}" if kiosk is not None else f"ip:{client_address()}"


def student_or_address() -> str:
    """Key a limit on the signed-in student, so students behind one address do not share a counter."""
    upn = signed_in_upn()
    return f"upn:{upn}" if upn else kiosk_or_address()


def limit_rules(settings: Settings) -> list[tuple[str, Callable[[], str], tuple[str, ...], str | None]]:
    """Return (limit, key function, endpoints, shared scope) for every limited view."""
    return [
        (settings.rate_limit_sign_in, kiosk_or_address,
         ("auth.sign_in", "auth.callback", "auth.complete", "kiosk.start"), None),
        (settings.rate_limit_diagnosis, student_or_address, ("student.diagnosis",), None),
        # An invite link's page and its "Continue": per address, like a sign-in (guessing tokens gets nowhere fast).
        (settings.rate_limit_sign_in, client_address, ("invites.show", "invites.take"), "invite"),
        (settings.rate_limit_unlock, student_or_address,
         ("student.unlock", "student.tap", "student.cancel", "student.end_and_sign_out"), None),
    ]


class PollLimit:
    """The status limit, counted for the poll without Flask-Limiter's per-request machinery.

    The guide page's poll is most of the portal's traffic, and Flask-Limiter's generic check was about a
    seventh of its cost. This counts in the same storage under the same keys as Flask-Limiter would (the
    moving window of PROOFUP_RATE_LIMIT_STATUS), and like it falls back to per-process counts while Redis
    does not answer.
    """

    def __init__(self, limiter: Limiter, limit: str):
        self.limiter = limiter
        self.items = parse_many(limit)
        self.fallback = MovingWindowRateLimiter(SweptMemoryStorage())
        self._redis_down_until = 0.0

    def wait_before(self, key: str) -> int:
        """Count one poll under a key; return 0 when it may go on, else the seconds until it may."""
        identifiers = (KEY_PREFIX, key, STATUS_SCOPE)
        for item in self.items:
            strategy = self._strategy()
            try:
                allowed = strategy.hit(item, *identifiers)
            except Exception:  # Redis stopped answering: the poll must go on, counted in this process
                log.warning("rate limit storage unreachable: the status poll counts per process for %ds",
                            REDIS_RETRY_SECONDS)
                self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
                strategy = self.fallback
                allowed = strategy.hit(item, *identifiers)
            if not allowed:
                return max(1, math.ceil(strategy.get_window_stats(item, *identifiers).reset_time - time.time()))
        return 0

    def _strategy(self) -> MovingWindowRateLimiter:
        return self.fallback if time.monotonic() < self._redis_down_until else self.limiter.limiter

    def __call__(self, view):
        """Wrap a poll view: over the limit, answer 429 in JSON and never run it."""

        @wraps(view)
        def limited(*args, **kwargs):
            wait = self.wait_before(student_or_address())
            return limited_answer(wait) if wait else view(*args, **kwargs)

        return limited


def limited_answer(wait: int):
    """Answer a request over its limit: JSON for the poller, else a page; both say how long to wait."""
    message = gettext("You did this too often in a short time. Nothing was changed. Please wait %(wait)s, "
                      "then try again.", wait=wait_words(wait))
    if request.endpoint in STATUS_ENDPOINTS:
        response = jsonify(error="rate_limited", message=message, retry_after=wait)
        response.status_code = 429
    else:
        body, status = error_page(429, TOO_MANY, message)
        response = current_app.make_response((body, status))
    response.headers["Retry-After"] = str(wait)
    return response


def seconds_until_reset(limiter: Limiter) -> int:
    """Return how long the client must wait before the breached limit lets it through again."""
    breached = limiter.current_limit
    if breached is None:
        return 60
    return max(1, math.ceil(breached.window.reset_time - time.time()))


def _drop_per_request_bookkeeping(app: Flask, limiter: Limiter) -> None:
    """Remove Flask-Limiter's after-request and teardown passes, which have nothing to do here.

    After every request it would add rate-limit headers (the portal sends none) and deduct conditional costs
    (no limit here has one), then clear its per-request state, which goes with the request anyway: together
    about a twentieth of a status poll. Fails loudly if a Flask-Limiter release renames them.
    """
    if limiter._headers_enabled:
        return
    inject = Limiter._Limiter__inject_headers  # type: ignore[attr-defined]
    after = [f for f in app.after_request_funcs[None] if getattr(f, "func", None) is inject]
    teardown = [f for f in app.teardown_request_funcs[None]
                if getattr(f, "__func__", None) is Limiter._Limiter__release_context]  # type: ignore[attr-defined]
    if len(after) != 1 or len(teardown) != 1:
        raise RuntimeError("Flask-Limiter's request hooks were not found: check app/web/limits.py against its release")
    app.after_request_funcs[None].remove(after[0])
    app.teardown_request_funcs[None].remove(teardown[0])


def install(app: Flask, settings: Settings) -> Limiter:
    """Limit the registered views as the settings say and answer a limited request with a clear 429."""
    limiter = Limiter(
        key_func=client_address,
        # Memory counts per process; with PROOFUP_REDIS_URL every instance and worker shares one count, and
        # if Redis stops answering the portal keeps serving with per-process counts rather than failing.
        storage_uri=settings.redis_url or "proofup-memory://",
        in_memory_fallback_enabled=bool(settings.redis_url),
        strategy="moving-window",  # no double burst at a window's edge, and an exact Retry-After
        key_prefix=KEY_PREFIX,
    )
    limiter.init_app(app)
    # Every limit here decorates its views, where Flask-Limiter checks it; the portal sets no default or
    # application-wide limit, so the pass Flask-Limiter also makes before every request finds nothing to count.
    # It cost about a tenth of a status poll: drop it (test_rate_limits proves every limit still trips).
    app.before_request_funcs[None].remove(limiter._check_request_limit)
    _drop_per_request_bookkeeping(app, limiter)
    for limit, key, endpoints, scope in limit_rules(settings):
        rule = (limiter.shared_limit(limit, scope, key_func=key) if scope
                else limiter.limit(limit, key_func=key))
        for endpoint in endpoints:
            app.view_functions[endpoint] = rule(app.view_functions[endpoint])
    poll_limit = PollLimit(limiter, settings.rate_limit_status)
    for endpoint in STATUS_ENDPOINTS:
        app.view_functions[endpoint] = poll_limit(app.view_functions[endpoint])

    @app.errorhandler(RateLimitExceeded)
    def too_many_requests(error):
        return limited_answer(seconds_until_reset(limiter))

    return limiter
