"""Kiosk mode in the test client: enrolment and revocation by the desk, the locked flow, sign-out everywhere, limits."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from app import create_app
from app.domain.sessions import SessionKind, token_hash
from app.web import SESSION_COOKIE
from app.web.kiosk import KIOSK_COOKIE
from tests.web.conftest import SEED, demo_settings
from tests.web.fakes import fake_code, state_of
from tests.web.test_helpdesk import DESK, ORIGIN, AUDITOR, finish, page_csrf, staff_sign_in

ADA, GRACE = "ada.lovelace@uni.test", "grace.hopper@uni.test"


@pytest.fixture
def settings(tmp_path):
    return demo_settings(tmp_path, helpdesk_group_dn=SEED.helpdesk_group_dn, auditor_group_dn=SEED.auditor_group_dn,
                         graph_authority=f"https://login.test/{SEED.tenant_id}")


def enrol(client, name: str = "Library 3", reason: str = "orientation week"):
    """Sign the desk in on this browser and make it a kiosk; return the enrolment's answer."""
    staff_sign_in(client, DESK)
    token = page_csrf(client, "/helpdesk/kiosks")
    return client.post("/helpdesk/kiosks/enrol", data={"csrf_token": token, "name": name, "reason": reason},
                       headers=ORIGIN)


def kiosk_sign_in(client, upn: str):
    """Press Start on the kiosk and come back from the authority as upn; return the page signed in to."""
    start = client.get("/kiosk/start")
    assert start.status_code == 302, start.status_code
    answer = client.post("/auth/callback", data={"state": state_of(start.headers["Location"]), "code": fake_code(upn)})
    return finish(client, answer)


def events(services, action: str) -> list:
    return [e for e in services.store.audit_events(limit=500) if e.action == action]


@pytest.fixture
def kiosk(client):
    assert enrol(client).status_code == 303
    return client


def test_the_desk_enrols_this_browser_and_is_signed_out_everywhere(client, services):
    answer = enrol(client)
    assert answer.status_code == 303
    logout = urlsplit(answer.headers["Location"])
    assert logout.path == "/adfs/oauth2/logout"
    assert parse_qs(logout.query)["post_logout_redirect_uri"] == ["http://localhost/kiosk/signed-out/microsoft"]
    credential = client.get_cookie(KIOSK_COOKIE)
    assert credential is not None and credential.http_only and credential.expires is not None
    stored = services.kiosks.kiosks()
    assert [k.name for k in stored] == ["Library 3"] and services.kiosks.device(credential.value).id == stored[0].id
    # Only the hash is stored: the credential itself is nowhere in the database.
    assert services.store.audit_events(limit=50) and credential.value not in repr(services.store.audit_events(limit=50))
    assert services.kiosks.table.kiosk_by_token_hash(token_hash(credential.value)) is not None
    enrolled = events(services, "kiosk.enrol")
    assert len(enrolled) == 1 and enrolled[0].reason == "orientation week" and enrolled[0].actor == DESK
    assert client.get("/helpdesk/now").status_code == 302, "the desk's session on the kiosk ended"
    # Microsoft's sign-out next, then the attract screen that clears what the browser keeps.
    step = client.get("/kiosk/signed-out/microsoft")
    assert step.headers["Location"].startswith(f"https://login.test/{SEED.tenant_id}/oauth2/v2.0/logout?")
    assert "kiosk%2Fsigned-out" in step.headers["Location"]
    home = client.get("/kiosk/signed-out")
    html = home.get_data(as_text=True)
    assert home.status_code == 200 and 'id="kiosk-start"' in html and "Library 3" in html
    assert home.headers["Clear-Site-Data"] == '"cache", "storage"'


@pytest.mark.parametrize("name, code", [("", "no_name"), ("x" * 61, "bad_name"), ("Lab\x07", "bad_name")])
def test_a_bad_name_enrols_nothing_and_is_audited(client, services, name, code):
    answer = enrol(client, name=name)
    assert answer.status_code == 302 and client.get_cookie(KIOSK_COOKIE) is None
    assert services.kiosks.kiosks() == []
    assert [e.detail.get("refusal") for e in events(services, "kiosk.enrol")] == [code]


def test_an_auditor_cannot_enrol(client, services):
    staff_sign_in(client, AUDITOR)
    assert 'id="enrol-form"' not in client.get("/helpdesk/kiosks").get_data(as_text=True)
    token = page_csrf(client, "/helpdesk/look-up")
    answer = client.post("/helpdesk/kiosks/enrol", data={"csrf_token": token, "name": "Lab", "reason": "x"},
                         headers=ORIGIN)
    assert answer.status_code == 403 and client.get_cookie(KIOSK_COOKIE) is None and services.kiosks.kiosks() == []


def test_kiosk_pages_work_only_on_an_enrolled_device(client, services):
    for path in ("/kiosk/", "/kiosk/start", "/kiosk/signed-out"):
        assert client.get(path).status_code == 403
    client.set_cookie(KIOSK_COOKIE, "made-up-credential-that-is-long-enough-0123")
    assert client.get("/kiosk/").status_code == 403
    assert len([e for e in events(services, "kiosk.refused") if e.detail.get("refusal") == "not_enrolled"]) == 4


def test_a_kiosk_signs_in_afresh_in_a_kiosk_session_with_the_kiosk_header(app, kiosk, services):
    assert kiosk.get("/").headers["Location"].endswith("/kiosk/")
    assert kiosk.get("/sign-in").headers["Location"].endswith("/kiosk/")
    page = kiosk_sign_in(kiosk, ADA)
    assert services.identity.last_force_login is True, "prompt=login on every kiosk sign-in"
    assert page.status_code == 302 and page.headers["Location"].endswith("/diagnosis")
    record = services.sessions.resolve(kiosk.get_cookie(SESSION_COOKIE).value)
    assert record.kind is SessionKind.KIOSK and record.upn == ADA
    html = kiosk.get("/diagnosis").get_data(as_text=True)
    assert 'id="kiosk-done"' in html and 'id="sign-out"' not in html and "kiosk/kiosk.js" in html
    assert 'data-idle-seconds="120"' in html
    kiosk.post("/unlock", data={"csrf_token": page_csrf(kiosk, "/diagnosis")})
    guide = kiosk.get("/guide").get_data(as_text=True)
    assert 'id="back-to-portal"' in guide and 'target="mysignins"' not in guide and 'data-device="kiosk"' in guide


def test_im_done_signs_out_everywhere_and_says_the_set_up_time_still_runs(kiosk, services):
    kiosk_sign_in(kiosk, ADA)
    kiosk.post("/unlock", data={"csrf_token": page_csrf(kiosk, "/diagnosis")})
    token = kiosk.get_cookie(SESSION_COOKIE).value
    answer = kiosk.post("/kiosk/done", data={"csrf_token": page_csrf(kiosk, "/guide"), "why": "done"})
    assert answer.status_code == 303 and "/adfs/oauth2/logout" in answer.headers["Location"]
    assert services.sessions.resolve(token) is None
    assert events(services, "session.end")[0].reason == "signed out at the kiosk"  # newest first
    kiosk.get("/kiosk/signed-out/microsoft")
    home = kiosk.get("/kiosk/signed-out")
    html = home.get_data(as_text=True)
    assert "You are signed out everywhere" in html and "Your set-up time still runs until" in html
    assert kiosk.get_cookie(SESSION_COOKIE) is None
    # Back: every page of the student is gone; the kiosk shows its attract screen.
    back = kiosk.get("/guide", follow_redirects=True).get_data(as_text=True)
    assert 'id="kiosk-start"' in back and ADA not in back and "still runs" not in back
    assert services.store.open_grant_for(ADA) is not None, "the grant stays open: the student may finish on the phone"


def test_a_revoked_kiosk_stops_at_once(app, kiosk, services):
    kiosk_sign_in(kiosk, ADA)
    token = kiosk.get_cookie(SESSION_COOKIE).value
    assert kiosk.get("/diagnosis").status_code == 200
    desk = app.test_client()
    staff_sign_in(desk, DESK)
    kiosk_id = services.kiosks.kiosks()[0].id
    form = {"csrf_token": page_csrf(desk, "/helpdesk/kiosks"), "reason": "stolen"}
    assert desk.post(f"/helpdesk/kiosks/{kiosk_id}/revoke", data=form, headers=ORIGIN).status_code == 302
    stopped = kiosk.get("/diagnosis")
    assert stopped.status_code == 403 and ADA not in stopped.get_data(as_text=True)
    assert services.sessions.resolve(token) is None
    assert kiosk.get("/kiosk/").status_code == 403 and kiosk.get("/kiosk/start").status_code == 403
    revoked = events(services, "kiosk.revoke")
    assert len(revoked) == 1 and revoked[0].reason == "stolen"
    again = desk.post(f"/helpdesk/kiosks/{kiosk_id}/revoke", headers=ORIGIN, follow_redirects=True,
                      data={"csrf_token": page_csrf(desk, "/helpdesk/kiosks"), "reason": "again"})
    assert "already revoked" in again.get_data(as_text=True)


def test_twenty_students_through_one_kiosk_in_a_minute_are_not_limited_but_a_browser_beside_it_is(
        tmp_path, services):
    app = create_app(demo_settings(tmp_path, helpdesk_group_dn=SEED.helpdesk_group_dn), services=services)
    app.config["TESTING"] = True
    kiosk, browser = app.test_client(), app.test_client()
    assert enrol(kiosk).status_code == 303
    seeded = [u.upn for u in SEED.users if u.enabled]
    students = [seeded[i % len(seeded)] for i in range(20)]
    # The browser beside the kiosk (same address) uses up the address's sign-ins first ...
    assert [browser.get("/sign-in").status_code for _ in range(21)][-2:] == [302, 429]
    for upn in students:  # ... and the kiosk still signs 20 students in, each from the same address
        page = kiosk_sign_in(kiosk, upn)
        assert page.status_code == 302, (upn, page.status_code)
        assert kiosk.post("/kiosk/done", data={"csrf_token": page_csrf(kiosk, "/diagnosis")}).status_code == 303
    assert browser.get("/sign-in").status_code == 429, "the kiosk's sign-ins did not free the address's counter"


def test_any_student_sign_in_on_a_kiosk_is_a_kiosk_one(app, kiosk, services):
    """Even a way in that is not the attract screen (an invite link's Continue) starts a kiosk sign-in there."""
    from app.web.auth import begin_sign_in, open_flow

    credential = kiosk.get_cookie(KIOSK_COOKIE).value
    for cookie, expected in ((f"{KIOSK_COOKIE}={credential}", "kiosk"), ("", "student")):
        with app.test_request_context("/", headers={"Cookie": cookie} if cookie else {}):
            answer = begin_sign_in(SessionKind.STUDENT)
            record = open_flow(services.store.take_sign_in_flow(state_of(answer.headers["Location"])))
        assert record["kind"] == expected
        assert services.identity.last_force_login is (expected == "kiosk")


def test_an_invite_link_on_a_kiosk_is_spent_by_its_own_student_only(kiosk, services, monkeypatch):
    """On a kiosk the invite is checked and spent like anywhere else, and the unlock is credited to it."""
    from dataclasses import replace

    from app.domain.invites import InviteState
    from tests.web.test_invites import continue_, finish_sign_in, make_invite, unlocked_through

    monkeypatch.setattr(services.invites, "settings", replace(services.invites.settings, mail_enabled=True,
                                                              public_url="https://portal.test"))
    invite, token = make_invite(services, ADA)
    refused = finish_sign_in(kiosk, continue_(kiosk, token), GRACE)
    assert refused.status_code == 403 and "another account" in refused.get_data(as_text=True)
    assert services.invites.get(invite.id).state(services.invites.clock()) is InviteState.OPENED
    page = finish_sign_in(kiosk, continue_(kiosk, token), ADA)
    assert page.request.path == "/diagnosis"
    assert services.invites.get(invite.id).state(services.invites.clock()) is InviteState.USED
    assert kiosk.post("/unlock", data={"csrf_token": page_csrf(kiosk, "/diagnosis")}).status_code == 302
    assert unlocked_through(services) == [invite.id]
