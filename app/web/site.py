"""What every page shares: the university's branding and desk, the language, and the signed-out-by-time-out hint."""
from __future__ import annotations

import math
from datetime import datetime, timezone

from flask import Blueprint, Flask, abort, g, request, send_file, session
from flask_babel import format_time, get_locale
from itsdangerous import BadSignature, URLSafeTimedSerializer

from app import LANGUAGES
from app.web import services, signed_in_upn

bp = Blueprint("site", __name__)

LANGUAGE_COOKIE = "proofup_lang"  # the student's own choice of language, over the browser's
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch"}  # each in its own language: found by those who read it
HINT_COOKIE = "proofup_seen"  # signed: when the student was last seen, and until when their set-up time runs
UNTIL_KEY = "until"  # session key: the open grant's end (epoch seconds), as the last page showed it
YEAR_SECONDS = 365 * 24 * 3600


def select_locale() -> str:
    """Pick the page language: ?lang=, then the student's saved choice, then the browser's languages."""
    for chosen in (request.args.get("lang"), request.cookies.get(LANGUAGE_COOKIE)):
        if chosen in LANGUAGES:
            return chosen
    return request.accept_languages.best_match(LANGUAGES) or LANGUAGES[0]


def language_links() -> list[tuple[str, str, str]]:
    """Return (code, name, URL) for every language but the page's own; POST pages link to the start page."""
    current = str(get_locale() or LANGUAGES[0])
    path = request.path if request.method == "GET" else "/"
    return [(code, LANGUAGE_NAMES[code], f"{path}?lang={code}") for code in LANGUAGES if code != current]


def note_unlock_until(expires_at: datetime | None) -> None:
    """Remember in the session until when the student's set-up time runs (None: nothing runs)."""
    if expires_at is None:
        session.pop(UNTIL_KEY, None)
    else:
        session[UNTIL_KEY] = int(_aware(expires_at).timestamp())


def unlock_until() -> datetime | None:
    """Return the end of the student's set-up time as the session knows it, if it is still ahead."""
    return _future(session.get(UNTIL_KEY))


def minutes_left(until: datetime) -> int:
    """Return whole minutes from now until `until`, rounded up (a countdown never shows 0 while time is left)."""
    return max(0, math.ceil((until - services().onboarding.clock()).total_seconds() / 60))


def wall_clock() -> datetime:
    """Return the real time (the hint cookie's stamp is real time, whatever clock the services run on)."""
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _future(epoch: object) -> datetime | None:
    if not isinstance(epoch, int) or epoch <= 0:
        return None
    until = datetime.fromtimestamp(epoch, timezone.utc)
    return until if until > services().onboarding.clock() else None


def _hints() -> URLSafeTimedSerializer:
    from flask import current_app

    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="proofup signed-out hint")


def timed_out_until() -> tuple[bool, datetime | None]:
    """Tell whether a visitor without a session was signed out by the time-out, and until when their time runs.

    The hint cookie is refreshed on every signed-in page; the session ends PROOFUP_SESSION_MINUTES after
    the last one. A hint as old as that means a time-out; a younger one means the student signed out.
    """
    raw = request.cookies.get(HINT_COOKIE)
    if not raw or signed_in_upn():
        return False, None
    g.forget_hint = True
    lifetime = services().settings.session_minutes * 60
    try:
        data, seen = _hints().loads(raw, max_age=lifetime + YEAR_SECONDS, return_timestamp=True)
    except BadSignature:
        return False, None
    idle = (wall_clock() - _aware(seen)).total_seconds()
    if idle < lifetime - 5:
        return False, None
    return True, _future(data.get(UNTIL_KEY) if isinstance(data, dict) else None)


def _keep_hints(response):
    """Save the language chosen by ?lang= and refresh (or drop) the time-out hint."""
    if request.endpoint == "static":
        return response
    secure = request.is_secure
    chosen = request.args.get("lang")
    if chosen in LANGUAGES and chosen != request.cookies.get(LANGUAGE_COOKIE):
        response.set_cookie(LANGUAGE_COOKIE, chosen, max_age=YEAR_SECONDS, httponly=True, samesite="Lax",
                            secure=secure)
    if signed_in_upn():
        hint = _hints().dumps({UNTIL_KEY: session.get(UNTIL_KEY, 0)})
        max_age = services().settings.session_minutes * 60 + services().settings.grant_minutes * 60
        response.set_cookie(HINT_COOKIE, hint, max_age=max_age, httponly=True, samesite="Lax", secure=secure)
    elif g.get("forget_hint"):
        response.delete_cookie(HINT_COOKIE, httponly=True, samesite="Lax", secure=secure)
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


def install(app: Flask) -> None:
    """Register the shared parts on the app."""
    app.register_blueprint(bp)
    app.after_request(_keep_hints)
