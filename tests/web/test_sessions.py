"""Portal sessions in the browser: a copied cookie is worth nothing after sign-out, idle or absolute end,
a sign-in rotates the token, the service desk can end a person's sessions, and a poll rarely writes."""
from __future__ import annotations

from sqlalchemy import text

from app.domain.actors import Actor
from app.web import SESSION_COOKIE
from tests.web.conftest import copy_of, csrf_of, session_token, sign_in
from tests.web.fakes import fake_code, state_of

HALF = "ada.lovelace@uni.test"
OTHER = "grace.hopper@uni.test"
DESK = Actor.staff("desk@uni.test", role="helpdesk", reason="lost phone")


def signed_out(response) -> bool:
    # A page sends the visitor to the start; the guide's poller gets a 401 (it reloads the page).
    if response.status_code == 401:
        return True
    return response.status_code == 302 and response.headers["Location"].endswith("/")


def test_a_cookie_copied_before_sign_out_opens_nothing_after_it(app, client, services):
    page = sign_in(client, HALF)
    token = csrf_of(page)
    client.post("/unlock", data={"csrf_token": token})
    thief = copy_of(app, client)
    assert thief.get("/status").status_code == 200  # the copy works while the student is signed in
    client.post("/sign-out", data={"csrf_token": token})
    assert signed_out(thief.get("/diagnosis")) and signed_out(thief.get("/status"))
    # It can neither cancel the student's grant nor unlock again, even with a valid CSRF token.
    assert signed_out(thief.post("/cancel", data={"csrf_token": token}))
    assert services.store.open_grant_for(HALF) is not None
    services.onboarding.cancel(HALF, actor=DESK)
    assert signed_out(thief.post("/unlock", data={"csrf_token": token}))
    assert services.store.open_grant_for(HALF) is None
    assert services.store.audit_events(HALF, action="session.end")


def test_a_session_ends_at_its_absolute_limit_however_busy(app, client, clock, services):
    sign_in(client, HALF)
    thief = copy_of(app, client)
    limit = services.settings.session_max_minutes * 60
    for _ in range(limit // 600 - 1):
        clock.advance(600)  # a poll every ten minutes keeps the idle limit (20 minutes) from ending it
        assert client.get("/status").status_code == 200
    clock.advance(limit - (limit // 600 - 1) * 600)
    assert signed_out(client.get("/status"))
    assert signed_out(thief.get("/diagnosis"))


def test_an_idle_session_ends_after_the_idle_limit(client, clock, services):
    sign_in(client, HALF)
    clock.advance(services.settings.session_minutes * 60 - 1)
    assert client.get("/status").status_code == 200
    clock.advance(services.settings.session_minutes * 60)
    assert signed_out(client.get("/status"))


def test_sign_in_rotates_the_token_and_ends_the_previous_session(app, client, services, clock):
    sign_in(client, HALF)
    before = session_token(client)
    clock.advance(services.settings.session_minutes * 60 + 1)  # the browser still holds its ended session's token
    sign_in(client, OTHER)
    after = session_token(client)
    assert after and after != before
    assert services.sessions.resolve(before) is None
    assert services.sessions.resolve(after).upn == OTHER


def test_a_signed_in_browser_keeps_its_session_when_an_answer_arrives(app, client, services):
    """Back after sign-in, or a second tab: the browser lands on its diagnosis in the session it has."""
    sign_in(client, HALF)
    before = session_token(client)
    client.get("/sign-out")  # a GET changes nothing
    state = state_of(app.test_client().get("/sign-in").headers["Location"])
    landed = client.post("/auth/callback", data={"state": state, "code": fake_code(OTHER)}, follow_redirects=True)
    assert landed.status_code == 200 and session_token(client) == before
    assert services.sessions.resolve(before).upn == HALF


def test_a_planted_token_is_not_adopted(app, client, services):
    planted = "A" * 43  # session fixation: an attacker sets a token of their choosing before the sign-in
    client.set_cookie(SESSION_COOKIE, planted)
    sign_in_page = client.get("/sign-in")
    client.post("/auth/callback", data={"state": state_of(sign_in_page.headers["Location"]), "code": fake_code(HALF)},
                follow_redirects=True)
    assert session_token(client) != planted and services.sessions.resolve(planted) is None


def test_the_service_desk_can_end_every_session_of_a_student(app, client, services):
    sign_in(client, HALF)
    laptop = copy_of(app, client)
    phone = app.test_client()
    sign_in(phone, HALF)
    assert services.sessions.revoke_sessions_for(HALF, DESK, reason="lost phone") == 2
    assert signed_out(client.get("/diagnosis")) and signed_out(laptop.get("/status")) and signed_out(phone.get("/guide"))
    event = services.store.audit_events(HALF, action="session.revoke_all")[0]
    assert (event.actor_kind, event.actor, event.reason) == ("staff", "desk@uni.test", "lost phone")
    assert event.detail["sessions"] == 2


def test_the_cookie_holds_only_a_random_token_and_the_database_only_its_hash(client, services, settings):
    sign_in(client, HALF)
    token = session_token(client)
    with client.session_transaction() as flask_session:
        assert HALF not in str(dict(flask_session)) and "Ada" not in str(dict(flask_session))
    assert HALF not in token
    with services.store.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM portal_sessions")).fetchall()
    assert len(rows) == 1 and token not in str(rows)


def test_the_session_cookie_is_httponly_lax_and_ends_with_the_browser(client):
    page_start = client.get("/sign-in")
    hop = client.post("/auth/callback", data={"state": state_of(page_start.headers["Location"]),
                                              "code": fake_code(HALF)})
    response = client.get(hop.headers["Location"])  # the same-site hop finishes the sign-in and sets the cookie
    cookie = next(v for v in response.headers.getlist("Set-Cookie") if v.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Expires" not in cookie and "Max-Age" not in cookie


def test_polling_writes_last_seen_at_most_once_a_minute(client, clock, services):
    sign_in(client, HALF)
    token = session_token(client)
    writes = []
    table = services.sessions.table
    original = table.touch_session
    table.touch_session = lambda *a, **k: (writes.append(a), original(*a, **k))
    for _ in range(30):  # a minute of polling every 2 s
        clock.advance(2)
        assert client.get("/status").status_code == 200
    assert len(writes) == 1
    assert services.sessions.resolve(token).last_seen_at > services.sessions.resolve(token).created_at


def test_nothing_read_along_with_the_session_outlives_its_request(client, services):
    """The session read brings the open grant for the poll's next read; a request that never reads it drops it."""
    from app.adapters.store.grants import open_grant_key

    page = sign_in(client, HALF)
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    assert client.get("/status").get_json()["phase"] in ("waiting", "propagating")
    assert client.get("/leave").status_code == 200  # reads the session (and so the grant), not the grant itself
    assert services.store.take_read_ahead(open_grant_key(HALF)) == (False, None)
