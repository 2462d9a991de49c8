"""Flask's signed session cookie, verified once per distinct cookie (app/web/signed_cookie.py)."""
from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask, flash, get_flashed_messages, jsonify, session

from app.web import signed_cookie
from app.web.signed_cookie import RememberedCookieSessions

COOKIE = "proofup_session"


@pytest.fixture
def app():
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test-secret-key-0123456789", SESSION_COOKIE_NAME=COOKIE,
                      PERMANENT_SESSION_LIFETIME=timedelta(minutes=20))
    app.session_interface = RememberedCookieSessions()

    @app.get("/set/<int:value>")
    def set_value(value):
        session["until"] = value
        flash("saved")
        return "ok"

    @app.get("/again")
    def flash_again():
        flash("again")  # appends to the session's list in place
        return "ok"

    @app.get("/read")
    def read():
        return jsonify(until=session.get("until"), flashes=get_flashed_messages())

    return app


def cookie_after(client, path: str) -> str:
    client.get(path)
    return client.get_cookie(COOKIE).value


def reading(app, cookie: str) -> dict:
    client = app.test_client()
    client.set_cookie(COOKIE, cookie)
    return client.get("/read").get_json()


def test_a_remembered_cookie_reads_as_flask_reads_it_and_each_request_gets_its_own_copy(app):
    cookie = cookie_after(app.test_client(), "/set/7")
    first = reading(app, cookie)
    assert first == {"until": 7, "flashes": ["saved"]}
    assert cookie in app.session_interface._verified
    client = app.test_client()
    client.set_cookie(COOKIE, cookie)
    client.get("/again")
    # That request appended to its own copy of the flashed messages: the remembered values are untouched.
    assert reading(app, cookie) == first


def test_a_tampered_or_junk_cookie_opens_an_empty_session_and_is_not_remembered(app):
    cookie = cookie_after(app.test_client(), "/set/7")
    payload, signature = cookie.rsplit(".", 1)
    forged = payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:]
    assert reading(app, forged) == {"until": None, "flashes": []}
    assert reading(app, "not-a-cookie") == {"until": None, "flashes": []}
    assert list(app.session_interface._verified) == []


def test_a_remembered_cookie_stops_working_once_older_than_the_session_lifetime(app, monkeypatch):
    cookie = cookie_after(app.test_client(), "/set/7")
    assert reading(app, cookie)["until"] == 7
    later = signed_cookie.time.time() + 21 * 60
    monkeypatch.setattr(signed_cookie.time, "time", lambda: later)
    assert reading(app, cookie)["until"] is None  # remembered, but too old: as Flask's own max_age check


def test_a_new_secret_key_forgets_every_remembered_cookie(app):
    cookie = cookie_after(app.test_client(), "/set/7")
    assert reading(app, cookie)["until"] == 7
    app.secret_key = "a-rotated-secret-key-0123456789"
    assert reading(app, cookie)["until"] is None
    assert cookie not in app.session_interface._verified


def test_memory_is_bounded(app, monkeypatch):
    monkeypatch.setattr(signed_cookie, "VERIFIED_COOKIES", 3)
    cookies = [cookie_after(app.test_client(), f"/set/{n}") for n in range(5)]
    for n, cookie in enumerate(cookies):
        assert reading(app, cookie)["until"] == n
    assert len(app.session_interface._verified) <= 3
