"""The console's invites in the test client: send with a reason (audited, queued with the invite), the list by
state, revoke, the auditor refused, and the mail that was not delivered."""
from __future__ import annotations

from app.domain.invites import InviteFilter, InviteState
from app.domain.mail import MailState
from tests.web.conftest import SEED, demo_settings
from tests.web.test_helpdesk import ADA, AUDITOR, DESK, ORIGIN, page_csrf, refusals, staff_sign_in

import pytest

GRACE = "grace.hopper@uni.test"


@pytest.fixture
def settings(tmp_path):
    return demo_settings(tmp_path, helpdesk_group_dn=SEED.helpdesk_group_dn, auditor_group_dn=SEED.auditor_group_dn,
                         smtp_host="localhost", smtp_port=2525, smtp_security="none", smtp_from="proofup@uni.test")


def send_invite(client, upn: str, reason: str = "ticket 7"):
    token = page_csrf(client, f"/helpdesk/student/{upn}")
    return client.post("/helpdesk/invites/new", data={"csrf_token": token, "upn": upn, "reason": reason},
                       headers=ORIGIN, follow_redirects=True)


def test_the_desk_invites_a_student_with_a_reason_and_sees_it_as_sent(client, services):
    staff_sign_in(client, DESK)
    page = send_invite(client, ADA)
    assert page.status_code == 200 and "Invite queued" in page.get_data(as_text=True)
    (invite,) = services.invites.search(InviteFilter(upn=ADA))
    assert (invite.created_by, invite.reason) == (DESK, "ticket 7")
    (mail,) = services.outbox.mails_for(ADA)
    assert mail.kind == "invite" and mail.id == invite.mail_id
    (event,) = services.store.audit_events(action="invite.created")
    assert (event.actor, event.reason, event.detail["role"]) == (DESK, "ticket 7", "helpdesk")
    listed = client.get("/helpdesk/invites?state=sent").get_data(as_text=True)
    assert ADA in listed and 'data-invite-state="sent"' in listed
    assert ADA not in client.get("/helpdesk/invites?state=used").get_data(as_text=True)


def test_without_a_reason_nothing_is_sent_and_the_refusal_is_audited(client, services):
    staff_sign_in(client, DESK)
    page = send_invite(client, ADA, reason="  ")
    assert "Say why" in page.get_data(as_text=True)
    assert services.invites.search(InviteFilter()) == [] and services.outbox.mails_for(ADA) == []
    assert [e.detail["refusal"] for e in refusals(services, "helpdesk.invite")] == ["no_reason"]


def test_an_unknown_account_gets_no_invite(client, services):
    staff_sign_in(client, DESK)
    page = send_invite(client, "nobody.here@uni.test")
    assert "no such account" in page.get_data(as_text=True)
    assert [e.detail["refusal"] for e in refusals(services, "helpdesk.invite")] == ["missing_in_ad"]


def test_an_auditor_sees_the_invites_but_cannot_send_or_revoke(client, services):
    desk = services.invites.invite(ADA, _desk_actor())
    staff_sign_in(client, AUDITOR)
    html = client.get(f"/helpdesk/student/{ADA}").get_data(as_text=True)
    assert 'id="invite-form"' not in html and 'id="revoke-' not in html and 'data-invite-state="sent"' in html
    token = page_csrf(client, "/helpdesk/audit")
    assert client.post("/helpdesk/invites/new", data={"csrf_token": token, "upn": ADA, "reason": "t"},
                       headers=ORIGIN).status_code == 403
    assert client.post(f"/helpdesk/invites/{desk.id}/revoke", data={"csrf_token": token, "reason": "t"},
                       headers=ORIGIN).status_code == 403
    assert len(services.invites.search(InviteFilter(upn=ADA))) == 1
    assert services.invites.get(desk.id).state(services.invites.clock()) is InviteState.SENT
    assert {e.detail["refusal"] for e in refusals(services, "helpdesk.invite")} == {"not_allowed"}


def test_revoke_with_a_reason_from_the_students_page(client, services):
    staff_sign_in(client, DESK)
    send_invite(client, ADA)
    (invite,) = services.invites.search(InviteFilter(upn=ADA))
    token = page_csrf(client, f"/helpdesk/student/{ADA}")
    page = client.post(f"/helpdesk/invites/{invite.id}/revoke", headers=ORIGIN, follow_redirects=True,
                       data={"csrf_token": token, "reason": "sent to the wrong person",
                             "back": f"/helpdesk/student/{ADA}"})
    assert "Invite revoked" in page.get_data(as_text=True) and page.request.path == f"/helpdesk/student/{ADA}"
    assert services.invites.get(invite.id).state(services.invites.clock()) is InviteState.REVOKED
    (event,) = [e for e in services.store.audit_events(action="invite.revoked")]
    assert (event.actor, event.reason) == (DESK, "sent to the wrong person")


def test_the_list_pages_and_a_bounce_shows_on_the_list_and_on_the_mail_page(client, services):
    for n in range(3):
        services.invites.invite_many([f"student{n}@uni.test" for n in range(60)], _desk_actor())
    staff_sign_in(client, DESK)
    first = client.get("/helpdesk/invites").get_data(as_text=True)
    assert first.count('data-invite-state="sent"') == 50 and 'id="older"' in first
    newest = services.invites.search(InviteFilter(), limit=1)[0]  # the older rounds were replaced (revoked)
    (mail,) = [m for m in services.outbox.claim_due(500, 60) if m.id == newest.mail_id]
    services.outbox.mark_ended(mail, MailState.BOUNCED, error="5.1.1 user unknown", code=550)
    bounced = client.get("/helpdesk/invites?state=bounced").get_data(as_text=True)
    assert bounced.count('data-invite-state="bounced"') == 1 and "user unknown" in bounced
    problems = client.get("/helpdesk/mail-problems").get_data(as_text=True)
    assert 'data-mail-state="bounced"' in problems and "550 5.1.1 user unknown" in problems
    assert "<td>invite</td>" in problems  # the kind in the desk's words


def _desk_actor():
    from app.domain.actors import Actor

    return Actor.staff(DESK, role="helpdesk", reason="ticket 9")
