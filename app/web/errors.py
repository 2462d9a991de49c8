"""Error pages that say what happened and what to do next; never a stack trace."""
from __future__ import annotations

import logging

from flask import Flask, render_template
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.domain.directory import DirectoryError, DirectoryUnavailable
from app.domain.evidence import GraphError

log = logging.getLogger(__name__)

PAGES = {
    400: (_l("That request could not be used"),
          _l("The page you came from may be out of date. Go back to the start page and try again.")),
    403: (_l("Not allowed"), _l("You are not allowed to do this. Sign in with your own university account.")),
    404: (_l("Page not found"), _l("Check the address, or go back to the start page.")),
    405: (_l("That request could not be used"), _l("Go back to the start page and try again.")),
    500: (_l("Something went wrong on our side"),
          _l("Nothing was changed. Please try again in a few minutes; if it keeps happening, contact the IT "
             "service desk.")),
}
CSRF_PAGE = (_l("This page has expired"),
             _l("For your security, forms are only valid for a short time. Nothing was changed. Go back to the "
                "start page, reload it and try again."))
UNAVAILABLE = {
    "directory": (_l("The university directory is not answering"),
                  _l("We could not reach Active Directory, so nothing was changed. Please try again in a few "
                     "minutes.")),
    "graph": (_l("Microsoft's services are not answering"),
              _l("We could not reach Microsoft Entra ID, so nothing was changed. Please try again in a few "
                 "minutes.")),
}


def error_page(status: int, title, message):
    """Render the shared error page with a status code."""
    return render_template("error.html", title=title, message=message, status=status), status


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
