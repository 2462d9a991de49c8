"""The ProofUp Portal application factory."""
from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlparse

from flask import Flask
from flask_babel import Babel
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from app import logs
from app.config import TRANSLATIONS_DIR, Settings, load_settings, require_public_url
from app.resources import site_folder

LANGUAGES = ("en", "de")  # each non-default locale has a catalogue in app/translations/<locale>
csrf = CSRFProtect()
# Request size limits (docs/operations.md, "Security"). The portal's own forms carry a CSRF token and the
# authority's form_post a code and a state: a few KiB. A larger body is refused with 413 from its
# Content-Length, before any of it is read or spooled to disk; deploy/nginx/proofup.conf refuses it first.
MAX_BODY_BYTES = 64 * 1024
MAX_FORM_FIELD_BYTES = 16 * 1024
MAX_FORM_FIELDS = 50


def create_app(settings: Settings | None = None, *, services=None, upgrade_in_child: bool = False) -> Flask:
    """Build the portal: settings (validated), services, CSRF, translations, headers, blueprints, errors."""
    logs.install_escaping()  # before anything logs: a request value must never start a line of its own
    settings = settings or load_settings()
    require_public_url(settings)
    public = urlparse(settings.public_url)
    public_is_https = public.scheme == "https"
    app = Flask(__name__, template_folder=site_folder("templates"), static_folder=site_folder("static"))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_minutes),
        SESSION_COOKIE_NAME="proofup_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=public_is_https,  # what the browser sees, whatever scheme the proxy speaks to us
        # URLs built outside a request, and the test client, use the public address too (Flask 3.1 no longer
        # refuses other hosts because of it: app/web/public.py does).
        SERVER_NAME=public.netloc,
        PREFERRED_URL_SCHEME=public.scheme,
        WTF_CSRF_TIME_LIMIT=settings.session_minutes * 60,
        # Flask-WTF's own Referer check compares with the request's Host; app/web/public.py checks Origin and
        # Referer against PROOFUP_PUBLIC_URL instead (and tolerates a browser that sends neither).
        WTF_CSRF_SSL_STRICT=False,
        BABEL_DEFAULT_LOCALE="en",
        BABEL_DEFAULT_TIMEZONE=settings.timezone,
        BABEL_TRANSLATION_DIRECTORIES=str(TRANSLATIONS_DIR),
        SEND_FILE_MAX_AGE_DEFAULT=3600,
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_FORM_FIELD_BYTES,
        MAX_FORM_PARTS=MAX_FORM_FIELDS,
        PROOFUP_SETTINGS=settings,
    )
    if services is None:
        from app.wiring import build_services

        services = build_services(settings, upgrade_in_child=upgrade_in_child)
    app.extensions["proofup"] = services
    from app.web.signed_cookie import RememberedCookieSessions

    app.session_interface = RememberedCookieSessions()
    if settings.proxy_hops:
        # Behind proxies: the client's address (rate limits, audit) and the Host that is checked against
        # PROOFUP_PUBLIC_URL come from their X-Forwarded-* headers (only as many hops as configured).
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)
    from app.web import errors, headers, limits, public, site

    authority = urlparse(settings.authority)
    headers.install(app, form_targets=(f"{authority.scheme}://{authority.netloc}",), https=public_is_https)
    # Right after the request id: a request for another host, or a foreign POST, is refused before CSRF or limits.
    public.install(app)
    csrf.init_app(app)
    Babel(app, locale_selector=site.select_locale, timezone_selector=site.select_timezone)

    from app.web.auth import bp as auth_bp
    from app.web.helpdesk import bp as helpdesk_bp
    from app.web.invites import bp as invites_bp
    from app.web.kiosk import bp as kiosk_bp
    from app.web.ops import bp as ops_bp
    from app.web.student import bp as student_bp

    errors.install(app)
    site.install(app)
    app.register_blueprint(auth_bp)
    app.register_blueprint(student_bp)
    app.register_blueprint(helpdesk_bp)
    app.register_blueprint(invites_bp)
    app.register_blueprint(kiosk_bp)
    app.register_blueprint(ops_bp)
    limits.install(app, settings)  # after the blueprints: it wraps their views
    return app


def create_wsgi_app() -> Flask:
    """Build the portal for a pre-forking server: warm the Graph models once, before the workers fork."""
    app = create_app(upgrade_in_child=True)  # the master runs no thread yet; Alembic stays out of it
    from app.wiring import warm_up_graph

    # Under gunicorn --preload every worker shares the Graph models instead of importing them on its first diagnosis.
    warm_up_graph(app.extensions["proofup"])
    return app
