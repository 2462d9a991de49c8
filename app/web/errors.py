"""Error pages that say what happened and what to do next; never a stack trace."""
from __future__ import annotations

import logging
import math
from datetime import timedelta

from flask import Flask, make_response, render_template, request, url_for
from flask_babel import format_timedelta
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.domain.directory import DirectoryError, DirectoryUnavailable
from app.domain.evidence import GraphError, GraphThrottled

log = logging.getLogger(__name__)

PAGES = {
    400: (_l("That request could not be used"),
          _l("The page you came from may be out of date. Go back to the start page and try again.")),
    403: (_l("Not allowed"), _l("You are not allowed to do this. Sign in with your own university account.")),
    404: (_l("Page not found"), _l("Check the address, or go back to the start page.")),
    405: (_l("That request could not be used"), _l("Go back to the start page and try again.")),
    413: (_l("That was more data than this portal accepts"),
          _l("Nothing was changed. Go back to the start page and try again.")),
    500: (_l("Something went wrong on our side"),
          _l("Nothing was changed. Please try again in a few minutes; if it keeps happening, the service desk "
             "can help.")),
}
CSRF_PAGE = (_l("This page has expired"),
             _l("For your security, forms are only valid for a short time. Nothing was changed. Go back to the "
                "start page, reload it and try again."))
UNAVAILABLE = {
    "directory": (_l("The university's account system is not answering"),
                  _l("We could not reach it, so nothing was changed. Please try again in a few minutes.")),
    "graph": (_l("Microsoft's services are not answering"),
              _l("We could not reach Microsoft 365, so nothing was changed. Please try again in a few minutes.")),
}

BUSY = (_l("Microsoft is busy right now"),
        _l("Microsoft Entra ID asked us to wait before we check your account, so nothing was changed. This page "
           "tries again by itself in %(seconds)s seconds; you do not need to do anything."))
# The busy page retries after Graph's Retry-After, but never sooner than 5 s nor later than a minute.
BUSY_RETRY_SECONDS = (5, 60)


def busy_retry_seconds(retry_after: float | None) -> int:
    """Return when the busy page retries: Graph's Retry-After (10 s without one), within BUSY_RETRY_SECONDS."""
    low, high = BUSY_RETRY_SECONDS
    return max(low, min(high, math.ceil(10.0 if retry_after is None else retry_after)))


def wait_words(seconds: int) -> str:
    """Say how long to wait in the page's language ("30 seconds", "2 minutes")."""
    return format_timedelta(timedelta(seconds=seconds), threshold=1.5)


def error_page(status: int, title, message):
    """Render the shared error page with a status code."""
    return render_template("errors/error.html", title=title, message=message, status=status), status


def install(app: Flask) -> None:
    """Register the error handlers."""

    @app.errorhandler(CSRFError)
    def csrf_failed(error):
        from app.web import audit_refusal

        audit_refusal("csrf.refused", "csrf", why=str(error.description)[:120])  # Flask-WTF's own fixed words
        return error_page(400, *CSRF_PAGE)

    @app.errorhandler(HTTPException)
    def http_error(error):
        title, message = PAGES.get(error.code, PAGES[400] if error.code < 500 else PAGES[500])
        return error_page(error.code, title, message)

    @app.errorhandler(DirectoryError)
    def directory_down(error):
        if not isinstance(error, DirectoryUnavailable):
            log.error("directory refused the portal: %s", error)  # bind or permission: an admin must act
            return error_page(500, *PAGES[500])
        log.warning("directory unavailable: %s", error)
        return error_page(503, *UNAVAILABLE["directory"])

    @app.errorhandler(GraphThrottled)
    def graph_busy(error):
        seconds = busy_retry_seconds(error.retry_after)
        log.warning("graph busy: %s (retry after %s s)", error, error.retry_after)
        # The page retries by itself through the Refresh header: no script and no meta tag, so the strict CSP
        # allows it. A POST (an unlock) comes back as the diagnosis page, which shows where the student stands.
        if request.method == "GET" and request.endpoint:
            target = url_for(request.endpoint, **(request.view_args or {}))
        else:
            target = url_for("student.diagnosis")
        response = make_response(error_page(503, BUSY[0], str(BUSY[1]) % {"seconds": seconds}))
        response.headers["Retry-After"] = str(seconds)
        response.headers["Refresh"] = f"{seconds}; url={target}"
        return response

    @app.errorhandler(GraphError)
    def graph_down(error):
        if not error.transient:
            log.error("graph refused the portal: %s (status %s)", error, error.status)
            return error_page(500, *PAGES[500])
        log.warning("graph unavailable: %s (status %s)", error, error.status)
        return error_page(503, *UNAVAILABLE["graph"])

    @app.errorhandler(Exception)
    def unexpected(error):
        log.exception("unexpected error")
        return error_page(500, *PAGES[500])
