"""What every page shares: the university's branding and desk, the language, and why a session ended."""
from __future__ import annotations

import math
from datetime import datetime, timezone, tzinfo
from functools import lru_cache

import pytz
from babel import Locale
from flask import Blueprint, Flask, abort, current_app, g, request, send_file, session, url_for
from flask_babel import format_time, get_locale
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from app import LANGUAGES
from app.domain.sessions import Verdict
from app.web import SESSION_COOKIE, STUDENT_KINDS, clear_session_cookie, services, signed_in_upn

bp = Blueprint("site", __name__)

LANGUAGE_COOKIE = "proofup_lang"  # the student's own choice of language, over the browser's
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch"}  # each in its own language: found by those who read it
UNTIL_KEY = "until"  # session key: the open grant's end (epoch seconds), as the last page showed it
YEAR_SECONDS = 365 * 24 * 3600


def select_locale() -> Locale:
    """Pick the page language: ?lang=, then the student's saved choice, then the browser's languages."""
    for chosen in _chosen_languages():
        if chosen in LANGUAGES:
            return _LOCALES[chosen]
    return _LOCALES[_best_language(request.headers.get("Accept-Language", ""))]


def _chosen_languages() -> tuple[str | None, str | None]:
    """Return the language asked for by ?lang= and the one saved in the cookie (None for each that is missing)."""
    # Looked up with "in": Werkzeug's .get() raises and catches a KeyError for a missing key, on every poll.
    args, cookies = request.args if request.query_string else {}, request.cookies
    return args["lang"] if "lang" in args else None, cookies[LANGUAGE_COOKIE] if LANGUAGE_COOKIE in cookies else None


def select_timezone() -> tzinfo:
    """Return the portal's time zone (PROOFUP_TIMEZONE) for the times a page shows."""
    return _zone(current_app.config["BABEL_DEFAULT_TIMEZONE"])


@lru_cache(maxsize=4)  # Flask-Babel would look the zone up by name again on every request
def _zone(name: str) -> tzinfo:
    return pytz.timezone(name)


# Parsed once each: Flask-Babel takes a Locale as it is, and a poll every 2 s need not parse "en" again.
_LOCALES = {code: Locale.parse(code) for code in LANGUAGES}


@lru_cache(maxsize=256)  # browsers send a handful of distinct headers; a stranger's junk only evicts
def _best_language(accept_language: str) -> str:
    return parse_accept_header(accept_language, LanguageAccept).best_match(LANGUAGES) or LANGUAGES[0]


def language_links() -> list[tuple[str, str, str]]:
    """Return (code, name, URL) for every language but the page's own; POST and error pages link to the start."""
    current = str(get_locale() or LANGUAGES[0])
    # Built from the matched route, never from the raw path: "//elsewhere.example" must not become a link.
    here = request.method == "GET" and request.url_rule is not None and request.endpoint != "static"
    endpoint, args = (request.endpoint, request.view_args or {}) if here else ("student.index", {})
    return [(code, LANGUAGE_NAMES[code], url_for(endpoint, **args, lang=code)) for code in LANGUAGES if code != current]


def note_unlock_until(expires_at: datetime | None) -> None:
    """Remember in the session until when the student's set-up time runs (None: nothing runs)."""
    value = None if expires_at is None else int(_aware(expires_at).timestamp())
    if session.get(UNTIL_KEY) == value:
        return  # unchanged: no new cookie on every 2-second poll
    if value is None:
        session.pop(UNTIL_KEY, None)
    else:
        session[UNTIL_KEY] = value


def unlock_until() -> datetime | None:
    """Return the end of the student's set-up time as the session knows it, if it is still ahead."""
    return _future(session.get(UNTIL_KEY))


def minutes_left(until: datetime) -> int:
    """Return whole minutes from now until `until`, rounded up (a countdown never shows 0 while time is left)."""
    return max(0, math.ceil((until - services().onboarding.clock()).total_seconds() / 60))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _future(epoch: object) -> datetime | None:
    if not isinstance(epoch, int) or epoch <= 0:
        return None
    until = datetime.fromtimestamp(epoch, timezone.utc)
    return until if until > services().onboarding.clock() else None


def signed_out_by_time() -> tuple[str, datetime | None]:
    """Tell why a visitor's session token no longer opens a session, if a time limit ended it.

    Return ("idle" or "expired", the end of the student's set-up time if it still runs), or ("", None)
    when there is no such token or the student signed out. The token is dropped on the way out, so the
    start page says it once.
    """
    token = request.cookies.get(SESSION_COOKIE)
    if not token or signed_in_upn():
        return "", None
    g.forget_session_cookie = True
    verdict, record = services().sessions.check(token)
    if verdict not in (Verdict.IDLE, Verdict.EXPIRED) or record is None or record.kind not in STUDENT_KINDS:
        return "", None
    grant = services().store.open_grant_for(record.upn)
    expires_at = grant.expires_at if grant is not None else None
    return verdict.value, _future(int(_aware(expires_at).timestamp())) if expires_at else None


def _after_page(response):
    """Save the language chosen by ?lang=, and drop a session token that only told of a time-out."""
    if request.endpoint == "static":
        return response
    chosen, saved = _chosen_languages()
    if chosen in LANGUAGES and chosen != saved:
        response.set_cookie(LANGUAGE_COOKIE, chosen, max_age=YEAR_SECONDS, httponly=True, samesite="Lax",
                            secure=request.is_secure)
    if g.get("forget_session_cookie"):
        clear_session_cookie(response)
    return response


@bp.app_context_processor
def branding() -> dict:
    """Give every template the university, the desk contact, the language links and the set-up time's end."""
    settings = services().settings
    return {
        "current_locale": str(get_locale() or LANGUAGES[0]),
        "university": settings.university_name,
        "has_logo": bool(settings.logo_file),
        "desk": {
            "text": settings.desk_text, "phone": settings.desk_phone, "url": settings.desk_url,
            "hours": settings.desk_hours, "tel": "".join(c for c in settings.desk_phone if c.isdigit() or c == "+"),
        },
        "language_links": language_links,
        "unlock_until": unlock_until,
        "minutes_left": minutes_left,
        "format_time": format_time,
    }


@bp.get("/logo")
def logo():
    """Serve the university's logo file (PROOFUP_LOGO_FILE)."""
    path = services().settings.logo_file
    if not path:
        abort(404)
    return send_file(path, max_age=3600)


def _forget_read_ahead(_error: BaseException | None = None) -> None:
    """Let nothing the session read brought along outlive its request (the thread serves others next)."""
    services().store.forget_read_ahead()


def install(app: Flask) -> None:
    """Register the shared parts on the app."""
    app.register_blueprint(bp)
    app.after_request(_after_page)
    app.teardown_request(_forget_read_ahead)
