"""The service desk console in the test client: who gets in, what the desk may do, and every refusal audited."""
from __future__ import annotations

import csv
import io

import pytest

from app.domain.grants import GrantState
from tests.web.conftest import SEED, csrf_of, demo_settings
from tests.web.fakes import fake_code, state_of

DESK = "hedy.lamarr@uni.test"
AUDITOR = "katherine.johnson@uni.test"
ADA = "ada.lovelace@uni.test"
KEN = "ken.thompson@uni.test"  # privileged
ORIGIN = {"Origin": "http://localhost"}


@pytest.fixture
def settings(tmp_path):
    return demo_settings(tmp_path, helpdesk_group_dn=SEED.helpdesk_group_dn, auditor_group_dn=SEED.auditor_group_dn)


def staff_sign_in(client, upn: str, *, mfa: bool = True):
    """Sign in through the staff flavour; `mfa` says whether the authority vouches for a second factor."""
    start = client.get("/helpdesk/sign-in")
    assert start.status_code == 302
    code = fake_code(upn, mfa=mfa)
    return finish(client, client.post("/auth/callback", data={"state": state_of(start.headers["Location"]),
                                                              "code": code}))


def student_sign_in(client, upn: str):
    start = client.get("/sign-in")
    return finish(client, client.post("/auth/callback", data={"state": state_of(start.headers["Location"]),
                                                              "code": fake_code(upn)}))


def finish(client, answer):
    """Follow the callback's same-site hop: /auth/complete finishes the sign-in in this browser."""
    assert answer.status_code == 303, answer.status_code
    return client.get(answer.headers["Location"])


def page_csrf(client, path: str) -> str:
    html = client.get(path).get_data(as_text=True)
    marker = 'name="csrf_token" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def act(client, upn: str, action: str, **form):
    token = page_csrf(client, f"/helpdesk/student/{upn}")
    return client.post(f"/helpdesk/student/{upn}/{action}", data={"csrf_token": token, **form}, headers=ORIGIN,
                       follow_redirects=True)


def refusals(services, action: str) -> list:
    return [e for e in services.store.audit_events(limit=500) if e.action == action and e.outcome == "refused"]


class TestWhoGetsIn:
    def test_a_visitor_is_sent_to_the_staff_sign_in(self, client):
        response = client.get("/helpdesk/now")
        assert response.status_code == 302 and response.headers["Location"].endswith("/helpdesk/sign-in")

    def test_a_desk_member_with_mfa_lands_on_now_with_a_staff_session(self, client, services):
        response = staff_sign_in(client, DESK)
        assert response.status_code == 302 and response.headers["Location"].endswith("/helpdesk/now")
        page = client.get("/helpdesk/now")
        assert page.status_code == 200 and "Hedy Lamarr" in page.get_data(as_text=True)
        start = [e for e in services.store.audit_events(DESK) if e.action == "session.start"][0]
        assert start.detail["kind"] == "staff" and start.detail["mfa"] is True and start.actor_kind == "staff"

    def test_a_password_only_staff_sign_in_gets_403_and_no_session(self, client, services):
        response = staff_sign_in(client, DESK, mfa=False)
        assert response.status_code == 403 and "second factor" in response.get_data(as_text=True)
        assert client.get("/helpdesk/now").status_code == 302  # no session was started
        assert [e.detail["refusal"] for e in refusals(services, "helpdesk.refused")] == ["no_mfa"]

    def test_a_password_only_student_session_never_reaches_a_staff_page(self, client, services):
        # The desk member signs in at the student pages (password only): a student session, never a staff one.
        student_sign_in(client, DESK)
        for path in ("/helpdesk/now", "/helpdesk/look-up?q=ada", f"/helpdesk/student/{ADA}", "/helpdesk/audit"):
            response = client.get(path)
            assert response.status_code == 403, path
            assert "Staff only" in response.get_data(as_text=True)
        refused = refusals(services, "helpdesk.refused")
        assert {(e.detail["refusal"], e.actor_kind, e.actor) for e in refused} == {("not_staff", "student", DESK)}

    def test_a_student_with_mfa_but_no_role_is_refused(self, client, services):
        response = staff_sign_in(client, "barbara.liskov@uni.test")
        assert response.status_code == 403
        assert [e.detail["refusal"] for e in refusals(services, "helpdesk.refused")] == ["no_role"]

    def test_a_role_removed_while_signed_in_locks_the_console_at_once(self, client, services, directory):
        staff_sign_in(client, DESK)
        assert client.get("/helpdesk/now").status_code == 200
        directory.remove_member(SEED.service_desk_group_dn, SEED.user_dn(SEED.user(DESK)))
        response = client.get("/helpdesk/now")
        assert response.status_code == 403
        assert [e.detail["refusal"] for e in refusals(services, "helpdesk.refused")] == ["role_removed"]

    def test_a_staff_member_signs_out_as_themself(self, client, services):
        staff_sign_in(client, DESK)
        token = page_csrf(client, "/helpdesk/now")
        assert client.post("/sign-out", data={"csrf_token": token}).status_code == 302
        assert client.get("/helpdesk/now").status_code == 302
        ended = services.store.audit_events(DESK, action="session.end")
        assert ended and (ended[0].actor, ended[0].actor_kind) == (DESK, "staff")

    def test_staff_sessions_end_sooner_than_students(self, services):
        policy = services.sessions.policy
        from app.domain.sessions import SessionKind

        assert policy.lifetime(SessionKind.STAFF).absolute < policy.lifetime(SessionKind.STUDENT).absolute


class TestLookUp:
    def test_finds_by_name_and_upn_and_links_the_file(self, client):
        staff_sign_in(client, DESK)
        html = client.get("/helpdesk/look-up?q=Lovel").get_data(as_text=True)
        assert f"/helpdesk/student/{ADA}" in html
        html = client.get("/helpdesk/look-up?q=*)(objectClass=*").get_data(as_text=True)
        assert "Nobody found." in html

    def test_finds_a_student_by_the_reference_code_their_page_shows(self, app, client, settings):
        from app.domain.reference import reference_code

        student_sign_in(app.test_client(), ADA)  # the code is matched among students the trail names
        code = reference_code(ADA, settings.secret_key)
        staff_sign_in(client, DESK)
        for typed in (code, code.lower().replace("-", "")):
            html = client.get(f"/helpdesk/look-up?q={typed}").get_data(as_text=True)
            assert f"/helpdesk/student/{ADA}" in html, typed
        assert code in client.get(f"/helpdesk/student/{ADA}").get_data(as_text=True)

    def test_the_file_shows_diagnosis_history_and_events_with_one_graph_round_trip(self, client, graph):
        staff_sign_in(client, DESK)
        before = graph.requests
        html = client.get(f"/helpdesk/student/{ADA}").get_data(as_text=True)
        assert 'data-state="stuck"' in html and 'id="grant-form"' in html
        assert graph.requests - before == 1

    def test_a_nonsense_upn_in_the_address_is_a_404(self, client):
        staff_sign_in(client, DESK)
        assert client.get("/helpdesk/student/not-a-upn").status_code == 404


class TestActing:
    def test_grant_with_a_reason_then_release(self, client, services):
        staff_sign_in(client, DESK)
        page = act(client, ADA, "grant", reason="ticket 4711", minutes="45", seen_grant="0")
        assert "Unlocked." in page.get_data(as_text=True)
        grant = services.store.open_grant_for(ADA)
        assert grant.actor == DESK and grant.reason == "ticket 4711"
        intent = [e for e in services.store.audit_events(ADA) if e.action == "grant.intent"][0]
        assert (intent.actor_kind, intent.reason, intent.detail["minutes"]) == ("staff", "ticket 4711", 45)
        assert intent.detail["role"] == "helpdesk"
        desk = services.store.audit_events(ADA, action="helpdesk.grant")[0]
        assert (desk.actor, desk.detail["role"], desk.reason, desk.detail["client"]) == (
            DESK, "helpdesk", "ticket 4711", "127.0.0.1")
        page = act(client, ADA, "release", reason="student asked", seen_grant=str(grant.id))
        assert "Released" in page.get_data(as_text=True)
        assert services.store.grants_for(ADA)[0].state is GrantState.CANCELLED
        assert not services.directory.is_member(SEED.bypass_group_dn, SEED.user_dn(SEED.user(ADA)))

    def test_extend_within_the_maximum(self, client, services):
        staff_sign_in(client, DESK)
        act(client, ADA, "grant", reason="t1", minutes="10", seen_grant="0")
        grant = services.store.open_grant_for(ADA)
        act(client, ADA, "extend", reason="needs longer", minutes="120", seen_grant=str(grant.id))
        assert services.store.open_grant_for(ADA).expires_at > grant.expires_at
        page = act(client, ADA, "extend", reason="too long", minutes="999", seen_grant=str(grant.id))
        assert "whole number of minutes" in page.get_data(as_text=True)

    def test_end_the_students_sessions(self, app, client, services):
        student = app.test_client()
        student_sign_in(student, ADA)
        assert student.get("/diagnosis").status_code == 200
        staff_sign_in(client, DESK)
        page = act(client, ADA, "end-sessions", reason="shared computer")
        assert "(1)" in page.get_data(as_text=True)
        assert student.get("/diagnosis").status_code == 302  # signed out

    @pytest.mark.parametrize(("upn", "form", "code"), [
        (KEN, {"reason": "try", "minutes": "30", "seen_grant": "0"}, "privileged"),
        (ADA, {"reason": "   ", "minutes": "30", "seen_grant": "0"}, "no_reason"),
        (ADA, {"reason": "x" * 501, "minutes": "30", "seen_grant": "0"}, "reason_too_long"),
        (ADA, {"reason": "t", "minutes": "3", "seen_grant": "0"}, "bad_minutes"),
        (ADA, {"reason": "t", "minutes": "=1+1", "seen_grant": "0"}, "bad_minutes"),
        (ADA, {"reason": "t", "minutes": "30", "seen_grant": "17"}, "stale_form"),
        ("nobody@uni.test", {"reason": "t", "minutes": "30", "seen_grant": "0"}, "missing_in_ad"),
    ])
    def test_bad_input_changes_nothing_and_is_audited(self, client, services, upn, form, code):
        staff_sign_in(client, DESK)
        page = act(client, upn, "grant", **form)
        assert page.status_code == 200 and "Nothing was changed" in page.get_data(as_text=True)
        assert services.store.open_grant_for(upn) is None
        trail = [e for e in services.store.audit_events(limit=500) if e.outcome == "refused"]
        assert code in {e.detail.get("refusal") for e in trail}
        assert all(e.actor == DESK for e in trail if e.detail.get("refusal") == code)

    def test_the_unlock_cap_holds_until_the_desk_overrides_it_with_a_reason(self, client, services):
        staff_sign_in(client, DESK)
        for ticket in ("t1", "t2", "t3"):  # the seeded cap is 3 unlocks in 7 days
            act(client, ADA, "grant", reason=ticket, minutes="30", seen_grant="0")
            act(client, ADA, "release", reason="done", seen_grant=str(services.store.open_grant_for(ADA).id))
        html = client.get(f"/helpdesk/student/{ADA}").get_data(as_text=True)
        assert 'id="override-cap"' in html
        page = act(client, ADA, "grant", reason="t4", minutes="30", seen_grant="0")
        assert "unlock limit" in page.get_data(as_text=True) and services.store.open_grant_for(ADA) is None
        act(client, ADA, "grant", reason="lost phone, checked ID", minutes="30", seen_grant="0", override_cap="yes")
        assert services.store.open_grant_for(ADA).reason == "lost phone, checked ID"
        override = services.store.audit_events(ADA, action="unlock.cap_override")
        assert override and override[0].actor == DESK and override[0].reason == "lost phone, checked ID"

    def test_an_auditor_reads_but_cannot_act(self, client, services):
        staff_sign_in(client, AUDITOR)
        html = client.get(f"/helpdesk/student/{ADA}").get_data(as_text=True)
        assert 'id="grant-form"' not in html
        token = page_csrf(client, "/helpdesk/audit")
        response = client.post(f"/helpdesk/student/{ADA}/grant", headers=ORIGIN,
                               data={"csrf_token": token, "reason": "t", "minutes": "30", "seen_grant": "0"})
        assert response.status_code == 403
        assert services.store.open_grant_for(ADA) is None
        refused = refusals(services, "helpdesk.grant")
        assert [(e.detail["refusal"], e.detail["role"]) for e in refused] == [("read_only", "auditor")]

    @pytest.mark.parametrize("headers, refusal", [({"Origin": "https://evil.test"}, "origin"),
                                                  ({"Sec-Fetch-Site": "cross-site"}, "fetch_site"),
                                                  ({"Sec-Fetch-Site": "same-site", "Origin": "null"}, "fetch_site")])
    def test_a_post_from_another_site_is_refused(self, client, services, headers, refusal):
        # The portal's one Origin rule (app/web/public.py) guards the console's forms as it guards every POST.
        staff_sign_in(client, DESK)
        token = page_csrf(client, f"/helpdesk/student/{ADA}")
        response = client.post(f"/helpdesk/student/{ADA}/grant", headers=headers,
                               data={"csrf_token": token, "reason": "t", "minutes": "30", "seen_grant": "0"})
        assert response.status_code == 403 and services.store.open_grant_for(ADA) is None
        assert [e.detail["refusal"] for e in refusals(services, "request.refused")] == [refusal]


class TestNowAndAudit:
    def test_now_lists_open_grants_unrecorded_members_and_privileged_tries(self, client, services, directory, graph):
        staff_sign_in(client, DESK)
        act(client, ADA, "grant", reason="ticket 1", minutes="30", seen_grant="0")
        act(client, KEN, "grant", reason="try", minutes="30", seen_grant="0")
        by_hand = SEED.user_dn(SEED.user("alan.turing@uni.test"))
        directory.add_member(SEED.bypass_group_dn, by_hand)
        before = graph.requests
        html = client.get("/helpdesk/now").get_data(as_text=True)
        assert graph.requests == before  # "now" asks Graph nothing
        assert ADA in html and "ticket 1" in html and by_hand in html and KEN in html
        token = page_csrf(client, "/helpdesk/now")
        client.post("/helpdesk/members/remove", headers=ORIGIN, data={"csrf_token": token, "dn": by_hand,
                                                                      "reason": "added by hand last year"})
        assert not directory.is_member(SEED.bypass_group_dn, by_hand)
        removed = [e for e in services.store.audit_events(limit=100) if e.action == "helpdesk.remove_member"]
        assert removed[0].reason == "added by hand last year" and removed[0].outcome == "ok"

    def test_audit_filter_and_formula_safe_export_which_is_itself_audited(self, client, services):
        staff_sign_in(client, DESK)
        act(client, ADA, "grant", reason="=HYPERLINK(\"http://evil\")", minutes="30", seen_grant="0")
        html = client.get(f"/helpdesk/audit?student={ADA}&action=grant.").get_data(as_text=True)
        assert "grant.intent" in html and "session.start" not in html
        token = page_csrf(client, "/helpdesk/audit")
        response = client.post("/helpdesk/audit/export", headers=ORIGIN,
                               data={"csrf_token": token, "student": ADA, "action": "grant."})
        assert response.mimetype == "text/csv"
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
        assert rows[0][0] == "id" and len(rows) > 1
        reasons = {row[8] for row in rows[1:]}
        assert "'=HYPERLINK(\"http://evil\")" in reasons  # neutralised: a spreadsheet shows it as text
        assert all(not cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)
        exported = [e for e in services.store.audit_events(limit=100) if e.action == "audit.exported"]
        assert exported[0].actor == DESK and exported[0].detail["filter"]["upn"] == ADA

    def test_a_bad_date_in_the_filter_shows_nothing_and_says_why(self, client):
        staff_sign_in(client, DESK)
        html = client.get("/helpdesk/audit?since=yesterday").get_data(as_text=True)
        assert "could not be read" in html and 'id="events"' in html and "No events." in html
