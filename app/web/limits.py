"""Rate limits (Flask-Limiter) on the views that store a row, write to AD or may ask Graph."""
from __future__ import annotations

import math
import time
from typing import Callable

from flask import Flask, jsonify, request
from flask_babel import gettext
from flask_babel import lazy_gettext as _l
from flask_limiter import Limiter, RateLimitExceeded

from app.config import Settings
from app.web import client_address, signed_in_upn
from app.web.errors import error_page, wait_words

TOO_MANY = _l("Please slow down")
STATUS_ENDPOINTS = ("student.status", "student.check_now")  # they answer the guide page's poller in JSON


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
        # One counter for the poll and "check now": both may end in a Graph check.
        (settings.rate_limit_status, student_or_address, STATUS_ENDPOINTS, "status"),
    ]


def seconds_until_reset(limiter: Limiter) -> int:
    """Return how long the client must wait before the breached limit lets it through again."""
    breached = limiter.current_limit
    if breached is None:
        return 60
    return max(1, math.ceil(breached.window.reset_time - time.time()))


def install(app: Flask, settings: Settings) -> Limiter:
    """Limit the registered views as the settings say and answer a limited request with a clear 429."""
    limiter = Limiter(
        key_func=client_address,
        # Memory counts per process; with PROOFUP_REDIS_URL every instance and worker shares one count, and
        # if Redis stops answering the portal keeps serving with per-process counts rather than failing.
        storage_uri=settings.redis_url or "memory://",
        in_memory_fallback_enabled=bool(settings.redis_url),
        strategy="moving-window",  # no double burst at a window's edge, and an exact Retry-After
        key_prefix="proofup",
    )
    limiter.init_app(app)
    for limit, key, endpoints, scope in limit_rules(settings):
        rule = (limiter.shared_limit(limit, scope, key_func=key) if scope
                else limiter.limit(limit, key_func=key))
        for endpoint in endpoints:
            app.view_functions[endpoint] = rule(app.view_functions[endpoint])

    @app.errorhandler(RateLimitExceeded)
    def too_many_requests(error):
        wait = seconds_until_reset(limiter)
        message = gettext("You did this too often in a short time. Nothing was changed. Please wait %(wait)s, "
                          "then try again.", wait=wait_words(wait))
        if request.endpoint in STATUS_ENDPOINTS:
            response = jsonify(error="rate_limited", message=message, retry_after=wait)
            response.status_code = 429
        else:
            body, status = error_page(429, TOO_MANY, message)
            response = app.make_response((body, status))
        response.headers["Retry-After"] = str(wait)
        return response

    return limiter
