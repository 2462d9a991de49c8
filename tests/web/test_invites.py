"""The invite link in the portal: GET changes nothing, the POST opens it and signs in, only the invite's own
account spends it, and every bad token gets one answer, audited without the token."""
from __future__ import annotations

from datetime import timedelta

import pytest

from app.adapters.store import InviteFilter, Invites
from app.domain.actors import Actor
from app.domain.invites import InviteState, new_token, token_hash
from app.domain.mail import MailState
from tests.web.conftest import SEED, csrf_of, demo_settings, sign_in
from tests.web.fakes import fake_code, state_of

DESK = Actor.staff("desk.one@uni.test", role="helpdesk", reason="ticket 4711")
STUDENT, OTHER = SEED.users[0].upn, SEED.users[1].upn


@pytest.fixture
def settings(tmp_path):
    # A mail server is configured (nothing listens: these tests never run the worker's mail pass).
    return demo_settings(tmp_path, smtp_host="localhost", smtp_port=2525, smtp_security="none",
                         smtp_from="proofup@uni.test", rate_limit_sign_in="200 per minute")


def make_invite(services, upn=STUDENT):
    """Invite a student as the desk would; return the invite and its token (read from the seal, as the mail pass)."""
    invite = services.invites.invite(upn, DESK)
    with services.store._tx() as s:  # noqa: SLF001
        token = services.invites.sealer.open(Invites(s).sealed_token(invite.id))
    return invite, token


def state(services, invite) -> InviteState:
    return services.invites.get(invite.id).state(services.invites.clock())


def refusals(services) -> list:
    return services.store.audit_events(action="invite.refused")


def continue_(client, token):
    """Load the invite's page and press "Continue"; return the POST's answer."""
    page = client.get(f"/invite/{token}")
    assert page.status_code == 200
    return client.post(f"/invite/{token}", data={"csrf_token": csrf_of(page)})


def finish_sign_in(client, answer, upn):
    """Answer the authority's sign-in page as upn; return the page the browser ends on."""
    assert answer.status_code == 302 and "state=" in answer.headers["Location"]
    return client.post("/auth/callback", data={"state": state_of(answer.headers["Location"]), "code": fake_code(upn)},
                       follow_redirects=True)


def test_opening_the_link_shows_a_continue_button_and_changes_nothing(client, services):
    invite, token = make_invite(services)
    for _ in range(3):  # a mail scanner, then the student, then a reload
        page = client.get(f"/invite/{token}")
        assert page.status_code == 200 and 'id="invite-continue"' in page.get_data(as_text=True)
    assert state(services, invite) is InviteState.SENT
    assert services.store.audit_events(action="invite.opened") == []


def test_continue_opens_the_invite_and_the_invites_own_sign_in_spends_it(client, services):
    invite, token = make_invite(services)
    answer = continue_(client, token)
    assert state(services, invite) is InviteState.OPENED
    landed = finish_sign_in(client, answer, STUDENT)
    assert landed.status_code == 200 and landed.request.path == "/diagnosis"
    assert state(services, invite) is InviteState.USED
    (used,) = services.store.audit_events(action="invite.used")
    assert used.upn == STUDENT and used.actor == STUDENT


def test_another_account_is_refused_audited_and_the_invite_is_not_spent(client, services):
    invite, token = make_invite(services)
    refused = finish_sign_in(client, continue_(client, token), OTHER)
    assert refused.status_code == 403 and "another account" in refused.get_data(as_text=True)
    assert client.get("/diagnosis").status_code == 302  # no session was started for the other account
    assert state(services, invite) is InviteState.OPENED
    (event,) = refusals(services)
    assert (event.detail["refusal"], event.upn, event.severity) == ("other_account", STUDENT, "warning")
    assert event.detail["signed_in"] == OTHER and token not in repr(event)
    # The right account can still use it.
    assert finish_sign_in(client, continue_(client, token), STUDENT).request.path == "/diagnosis"
    assert state(services, invite) is InviteState.USED


def test_a_signed_in_student_continues_without_a_second_sign_in(client, services):
    invite, token = make_invite(services)
    sign_in(client, STUDENT)
    answer = continue_(client, token)
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/diagnosis")
    assert state(services, invite) is InviteState.USED
    page = client.get("/diagnosis")  # the unlock that follows is credited to the invite
    assert client.post("/unlock", data={"csrf_token": csrf_of(page)}).status_code == 302
    assert unlocked_through(services) == [invite.id]


def dead_tokens(services, clock):
    """Return (name, token) for every way a token can be dead."""
    used_invite, used = make_invite(services, SEED.users[2].upn)
    services.invites.redeem(used_invite.id, used_invite.upn, Actor.student(used_invite.upn))
    revoked_invite, revoked = make_invite(services, SEED.users[3].upn)
    services.invites.revoke(revoked_invite.id, DESK)
    bounced_invite, bounced = make_invite(services, SEED.users[4].upn)
    (mail,) = [m for m in services.outbox.claim_due(50, 60) if m.id == bounced_invite.mail_id]
    services.outbox.mark_ended(mail, MailState.BOUNCED, error="550 user unknown", code=550)
    _, expired = make_invite(services, SEED.users[5].upn)
    with services.store._tx(write=True) as s:  # noqa: SLF001 - made long ago
        from sqlalchemy import update

        from app.adapters.store.invites import InviteRow

        s.execute(update(InviteRow).where(InviteRow.token_hash == token_hash(expired))
                  .values(expires_at=clock() - timedelta(seconds=1)))
    return [("used", used), ("revoked", revoked), ("bounced", bounced), ("expired", expired),
            ("unknown", new_token()), ("malformed", "not-a-token"), ("malformed", "x" * 500)]


def test_every_dead_token_gets_the_same_answer_audited_without_the_token(client, services, clock):
    answers = set()
    tokens = dead_tokens(services, clock)
    form = {"csrf_token": csrf_of(client.get("/"))}
    before = {i.id: i.state(clock()) for i in services.invites.search(InviteFilter())}
    for _name, token in tokens:
        for response in (client.get(f"/invite/{token}"), client.post(f"/invite/{token}", data=form)):
            body = response.get_data(as_text=True)
            answers.add((response.status_code, body.count("does not work")))
    assert answers == {(404, 2)}  # the title and the tab's title, for every one
    assert {i.id: i.state(clock()) for i in services.invites.search(InviteFilter())} == before  # nothing changed
    events = refusals(services)
    assert sorted({e.detail["refusal"] for e in events}) == sorted({name for name, _ in tokens})
    for event in events:
        assert event.detail["path"] == "/invite/(token)" and len(event.detail["link_hash"]) == 8
    dump = repr(events)
    assert not any(token in dump for _name, token in tokens if len(token) > 20)


def test_refusals_are_rate_limited_per_address(tmp_path, services, app):
    app.config["RATELIMIT_ENABLED"] = True
    client = app.test_client()
    statuses = [client.get(f"/invite/{new_token()}").status_code for _ in range(205)]
    assert statuses[:200] == [404] * 200 and statuses[-1] == 429


def test_invite_changes_are_counted_from_the_events(tmp_path, services, client):
    from tests.web.test_metrics import TOKEN, delta, portal, scrape

    metrics = portal(tmp_path, services, metrics_token=TOKEN)
    before = scrape(metrics)
    invite, token = make_invite(services)
    make_invite(services)  # a second invite for the same student revokes the first
    second = services.invites.search(InviteFilter(upn=STUDENT))[0]
    with services.store._tx() as s:  # noqa: SLF001
        token = services.invites.sealer.open(Invites(s).sealed_token(second.id))
    finish_sign_in(client, continue_(client, token), STUDENT)
    client.get(f"/invite/{new_token()}")
    after = scrape(metrics)
    for change, count in (("created", 2), ("revoked", 1), ("opened", 1), ("used", 1), ("refused", 1)):
        assert delta(before, after, "proofup_invite_changes_total", change=change) == count, change


def unlocked_through(services) -> list:
    """Return the invite each grant.intent names (None: the unlock came from no invite), oldest first."""
    return [e.detail.get("invite_id") for e in reversed(services.store.audit_events(action="grant.intent"))]


def test_an_unlock_after_an_invites_sign_in_is_credited_to_that_invite_only(client, services):
    invite, token = make_invite(services)
    page = finish_sign_in(client, continue_(client, token), STUDENT)
    assert client.post("/unlock", data={"csrf_token": csrf_of(page)}).headers["Location"].endswith("/guide")
    assert unlocked_through(services) == [invite.id]
    services.onboarding.cancel(STUDENT, actor=Actor.student(STUDENT))
    # A sign-in of their own (no invite) starts afresh: the next unlock belongs to no invite.
    page = sign_in(client, STUDENT)
    assert client.post("/unlock", data={"csrf_token": csrf_of(page)}).status_code == 302
    assert unlocked_through(services) == [invite.id, None]


def test_a_forged_invite_id_credits_nothing(client, services):
    # Another student's spent invite, or one never used, is not credited, whatever the browser claims.
    theirs, _ = make_invite(services, OTHER)
    services.invites.redeem(theirs.id, OTHER, Actor.student(OTHER))
    unused, _ = make_invite(services)
    for invite_id in (theirs.id, unused.id, 10**9):
        services.onboarding.unlock(STUDENT, actor=Actor.student(STUDENT), invite_id=invite_id)
        services.onboarding.cancel(STUDENT, actor=Actor.student(STUDENT))
    assert unlocked_through(services) == [None, None, None]
