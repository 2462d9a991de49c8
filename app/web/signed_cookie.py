"""Flask's signed session cookie, verified once per distinct cookie rather than on every request.

The guide page polls every 2 s with the same cookie; verifying its signature (and building the signer) was
about a sixth of a poll's cost. A cookie that verified is remembered with the time it was signed, so the
next request with the very same text only checks its age again. Only cookies this portal signed are kept,
at most VERIFIED_COOKIES of them: a stranger's junk costs a failed verification, never memory.
"""
from __future__ import annotations

import copy
import threading
import time
from typing import Any

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from itsdangerous import BadSignature, URLSafeTimedSerializer

IMMUTABLE = (str, int, float, bytes, type(None))  # values a request cannot change in place (bool is an int)
VERIFIED_COOKIES = 4096  # a few thousand students polling at once; beyond that the memory starts afresh


class RememberedCookieSessions(SecureCookieSessionInterface):
    """The default signed-cookie session, with the signer built once and each verified cookie remembered."""

    def __init__(self) -> None:
        self._keys: tuple[Any, ...] = ()
        self._serializer: URLSafeTimedSerializer | None = None
        self._verified: dict[str, tuple[int, dict[str, Any]]] = {}  # cookie text -> (signed at, its values)
        self._guard = threading.Lock()

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        """Return the signer for the app's current keys (built again, and the memory dropped, if they change)."""
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        if keys != self._keys:
            with self._guard:
                self._serializer = super().get_signing_serializer(app)
                self._verified = {}
                self._keys = keys
        return self._serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """Return the session the cookie holds; an unsigned, tampered or too old cookie gives an empty one."""
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        text = request.cookies.get(self.get_cookie_name(app))
        if not text:
            return self.session_class()
        max_age = int(app.permanent_session_lifetime.total_seconds())
        verified = self._verified
        remembered = verified.get(text)
        if remembered is None:
            try:
                values, signed_at = serializer.loads(text, max_age=max_age, return_timestamp=True)
            except BadSignature:  # SignatureExpired too: as Flask, an empty session
                return self.session_class()
            if len(verified) >= VERIFIED_COOKIES:
                verified.clear()
            remembered = verified[text] = (int(signed_at.timestamp()), values)
        age = int(time.time()) - remembered[0]
        if not 0 <= age <= max_age:  # itsdangerous's own rule for an expired signature
            return self.session_class()
        # A copy: a view may change what it reads (flashed messages are appended in place). Only containers
        # need one, and a poll's session holds none (deepcopy of the whole dict was a tenth of this method).
        return self.session_class({name: value if isinstance(value, IMMUTABLE) else copy.deepcopy(value)
                                   for name, value in remembered[1].items()})
