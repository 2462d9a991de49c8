"""Invites against real databases (SQLite file and PostgreSQL): made with their mail in one unit of work,
opened, spent once by their own student, revoked, listed by state; the token is never stored in clear."""
from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from app.adapters.directory_embedded import EmbeddedDirectory
from app.adapters.mail_templates import MailTemplates
from app.adapters.mailer import SmtpMailer
from app.adapters.sealing import Sealer
from app.adapters.store import InviteFilter, InviteStore, OutboxStore
from app.domain.actors import WORKER, Actor
from app.domain.invites import InviteError, InviteRefusal, InviteState, token_hash
from app.domain.mail import MailState
from app.seed import load_seed
from app.services.invites import SEAL_LABEL, InviteLinks, InviteRefused, InviteService, InviteSettings
from app.services.outbox import OutboxSender

ADA, GRACE = "ada.lovelace@uni.test", "grace.hopper@uni.test"
DESK = Actor.staff("desk.one@uni.test", role="helpdesk", reason="ticket 4711")
PORTAL = "https://proofup.uni.test"
SECRET = "a-test-secret-key-of-some-length"


@pytest.fixture
def outbox(store):
    return OutboxStore(store, sender="proofup@uni.test")


@pytest.fixture
def invites(store, outbox, clock):
    settings = InviteSettings(days=7, desk="IT Service Desk, +49 30 1234", university="Hochschule Musterstadt",
                              public_url=PORTAL, mail_enabled=True)
    return InviteService(store, InviteStore(store), outbox, Sealer(SECRET, SEAL_LABEL), settings, clock=clock)


def links(invites, clock):
    return InviteLinks(invites.invites, invites.sealer, PORTAL, clock=clock)


def token_of(invites, invite) -> str:
    """Open the seal as the sender would (tests only: the portal itself never reads it outside a mail pass)."""
    with invites.store._tx() as s:  # noqa: SLF001
        from app.adapters.store import Invites

        sealed = Invites(s).sealed_token(invite.id)
    return invites.sealer.open(sealed) if sealed else None


def test_many_invites_commit_with_their_mails_and_audit_lines_in_one_unit_of_work(invites, outbox, store):
    made = invites.invite_many([ADA, "Grace.Hopper@uni.test", ADA], DESK, batch_id=3)
    assert [i.upn for i in made] == [ADA, GRACE]  # normalised once, duplicates invited once
    assert all(i.state(store.clock()) is InviteState.SENT and i.batch_id == 3 for i in made)
    assert {m.kind for m in outbox.mails_for(ADA)} == {"invite"}
    assert [i.mail_id for i in made] == [outbox.mails_for(u)[0].id for u in (ADA, GRACE)]
    created = store.audit_events(action="invite.created")
    assert len(created) == 2 and {e.reason for e in created} == {"ticket 4711"}


def test_a_failure_mid_way_leaves_no_invite_and_no_mail(invites, outbox, store, monkeypatch):
    def queue_then_crash(*args, **kwargs):
        OutboxStore.queue_many(outbox, *args, **kwargs)
        raise RuntimeError("crash after queueing the mails, before the audit lines")

    monkeypatch.setattr(outbox, "queue_many", queue_then_crash)
    with pytest.raises(RuntimeError):
        invites.invite_many([ADA, GRACE], DESK)
    assert invites.search(InviteFilter()) == [] and outbox.mails_for(ADA) == []
    assert store.audit_events(action="invite.created") == []


def test_only_the_desk_the_cli_and_the_worker_invite(invites):
    for actor in (Actor.student(ADA), Actor.visitor("203.0.113.9"),
                  Actor.staff("auditor@uni.test", role="auditor", reason="look")):
        with pytest.raises(InviteError) as refused:
            invites.invite(ADA, actor)
        assert refused.value.code == "not_allowed"
    assert invites.invite(ADA, Actor.cli("root", reason="t")).upn == ADA
    assert invites.invite(GRACE, WORKER).upn == GRACE


def test_without_a_mail_server_nobody_is_invited(store, outbox, clock):
    service = InviteService(store, InviteStore(store), outbox, Sealer(SECRET, SEAL_LABEL),
                            InviteSettings(public_url=PORTAL, mail_enabled=False), clock=clock)
    with pytest.raises(InviteError) as refused:
        service.invite(ADA, DESK)
    assert refused.value.code == "no_mail" and outbox.mails_for(ADA) == []


def test_the_token_is_stored_only_as_its_hash_and_sealed_and_the_outbox_never_holds_it(invites, store, outbox):
    invite = invites.invite(ADA, DESK)
    token = token_of(invites, invite)
    assert invites.check(token).id == invite.id
    with store.engine.connect() as conn:
        dump = repr([tuple(r) for t in ("invites", "outbox", "audit_events")
                     for r in conn.exec_driver_sql(f"SELECT * FROM {t}")])
    assert token not in dump and token_hash(token) in dump


def test_a_newer_invite_revokes_the_older_live_one(invites, store):
    first = invites.invite(ADA, DESK)
    old_token = token_of(invites, first)
    second = invites.invite(ADA, DESK)
    assert invites.get(first.id).state(store.clock()) is InviteState.REVOKED
    assert invites.get(second.id).state(store.clock()) is InviteState.SENT
    with pytest.raises(InviteRefused) as refused:
        invites.check(old_token)
    assert refused.value.code is InviteRefusal.REVOKED


def test_opened_once_then_spent_once_by_its_own_student_only(invites, store, clock):
    invite = invites.invite(ADA, DESK)
    token = token_of(invites, invite)
    visitor = Actor.visitor("198.51.100.7")
    invites.open(token, visitor)
    invites.open(token, visitor)  # a second click: still opened, audited once
    assert invites.get(invite.id).state(clock()) is InviteState.OPENED
    assert len(store.audit_events(action="invite.opened")) == 1
    with pytest.raises(InviteRefused) as refused:
        invites.redeem(invite.id, GRACE, Actor.student(GRACE))
    assert refused.value.code is InviteRefusal.OTHER_ACCOUNT
    assert invites.get(invite.id).state(clock()) is InviteState.OPENED  # not spent by the wrong account
    assert invites.redeem(invite.id, ADA, Actor.student(ADA)).state(clock()) is InviteState.USED
    with pytest.raises(InviteRefused) as again:
        invites.redeem(invite.id, ADA, Actor.student(ADA))
    assert again.value.code is InviteRefusal.USED
    with pytest.raises(InviteRefused):
        invites.open(token, visitor)


def test_two_sign_ins_racing_spend_the_invite_once(invites, clock):
    invite = invites.invite(ADA, DESK)
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def redeem() -> None:
        barrier.wait()
        try:
            invites.redeem(invite.id, ADA, Actor.student(ADA))
            outcomes.append("spent")
        except InviteRefused as exc:
            outcomes.append(exc.code.value)

    threads = [threading.Thread(target=redeem) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["spent"] + [InviteRefusal.USED.value] * 3


def test_an_expired_invite_is_refused_and_listed_as_expired(invites, clock):
    invite = invites.invite(ADA, DESK)
    token = token_of(invites, invite)
    clock.advance(timedelta(days=7).total_seconds())
    with pytest.raises(InviteRefused) as refused:
        invites.check(token)
    assert refused.value.code is InviteRefusal.EXPIRED
    with pytest.raises(InviteRefused):
        invites.redeem(invite.id, ADA, Actor.student(ADA))


def test_revoke_one_and_a_whole_batch(invites, store, clock):
    one = invites.invite(ADA, DESK)
    assert invites.revoke(one.id, DESK) and not invites.revoke(one.id, DESK)
    batch = invites.invite_many([ADA, GRACE], DESK, batch_id=9)
    invites.redeem(batch[1].id, GRACE, Actor.student(GRACE))
    assert invites.revoke_batch(9, DESK) == 1  # the used one stays used
    states = {i.upn: i.state(clock()) for i in invites.search(InviteFilter(batch_id=9))}
    assert states == {ADA: InviteState.REVOKED, GRACE: InviteState.USED}


def test_the_list_filters_by_every_state_as_the_domain_derives_it(invites, outbox, store, clock):
    upns = [f"student{n}@uni.test" for n in range(6)]
    made = invites.invite_many(upns, DESK)
    invites.open(token_of(invites, made[1]), WORKER)
    invites.redeem(made[2].id, upns[2], Actor.student(upns[2]))
    invites.revoke(made[3].id, DESK)
    (mail,) = [m for m in outbox.claim_due(10, 60) if m.id == made[4].mail_id]
    outbox.mark_ended(mail, MailState.BOUNCED, error="550 no such user", code=550)
    with store._tx(write=True) as s:  # noqa: SLF001 - one invite made long ago
        s.execute(text("UPDATE invites SET expires_at = created_at WHERE id = :id"), {"id": made[5].id})
    everyone = invites.search(InviteFilter())
    derived = {i.id: i.state(clock()) for i in everyone}
    for state in InviteState:
        listed = {i.id for i in invites.search(InviteFilter(state=state))}
        assert listed == {i for i, s in derived.items() if s is state}, state
    assert set(derived.values()) == set(InviteState)
    assert invites.invites.counts(clock()) == {state: 1 for state in InviteState}  # /metrics' proofup_invites


def test_the_list_pages_newest_first(invites):
    made = invites.invite_many([f"s{n}@uni.test" for n in range(5)], DESK)
    first = invites.search(InviteFilter(), limit=2)
    second = invites.search(InviteFilter(), before_id=first[-1].id, limit=2)
    assert [i.id for i in first + second] == [m.id for m in reversed(made)][:4]


def test_the_mail_carries_the_link_rendered_at_send_time_and_the_seal_is_erased_once_sent(
        smtp_server, invites, outbox, store, clock):
    server = smtp_server("none")
    invite = invites.invite(ADA, DESK)
    token = token_of(invites, invite)
    sender = OutboxSender(outbox, SmtpMailer(**server.mailer_kwargs(), sender="proofup@uni.test", timeout_seconds=5),
                          MailTemplates(timezone="Europe/Berlin"), EmbeddedDirectory(load_seed()), clock=clock,
                          expanders=(links(invites, clock),))
    assert sender.send_due().sent == 1
    (received,) = server.mailbox.wait_for(1)
    text = received.get_body(("plain",)).get_content()
    assert f"{PORTAL}/invite/{token}" in text and "IT Service Desk, +49 30 1234" in text
    assert f'href="{PORTAL}/invite/{token}"' in received.get_body(("html",)).get_content()
    assert token_of(invites, invite) is None  # nothing can send it again: the seal is gone
    assert invites.check(token).id == invite.id  # the link itself still works


def test_a_revoked_invites_mail_is_never_sent(smtp_server, invites, outbox, clock):
    server = smtp_server("none")
    invite = invites.invite(ADA, DESK)
    invites.revoke(invite.id, DESK)
    sender = OutboxSender(outbox, SmtpMailer(**server.mailer_kwargs(), sender="proofup@uni.test", timeout_seconds=5),
                          MailTemplates(), EmbeddedDirectory(load_seed()), clock=clock,
                          expanders=(links(invites, clock),))
    report = sender.send_due()
    assert (report.sent, report.failed) == (0, 1) and server.mailbox.messages == []
    assert outbox.get(invite.mail_id).state is MailState.FAILED


def test_a_bounced_invite_shows_as_bounced(smtp_server, invites, outbox, clock):
    server = smtp_server("none")
    server.faults.refuse_recipient = "550 5.1.1 user unknown"
    invite = invites.invite(ADA, DESK)
    sender = OutboxSender(outbox, SmtpMailer(**server.mailer_kwargs(), sender="proofup@uni.test", timeout_seconds=5),
                          MailTemplates(), EmbeddedDirectory(load_seed()), clock=clock,
                          expanders=(links(invites, clock),))
    assert sender.send_due().bounced == 1
    shown = invites.get(invite.id)
    assert shown.state(clock()) is InviteState.BOUNCED and "user unknown" in shown.mail_error
    assert token_of(invites, invite) is None


def test_retention_purges_invites_that_ended_long_ago_and_keeps_the_rest(invites, store, clock):
    from app.services.retention import Retention, RetentionPolicy

    day = 24 * 3600
    used, revoked, expired = invites.invite_many(["u1@uni.test", "u2@uni.test", "u3@uni.test"], DESK)
    invites.redeem(used.id, used.upn, Actor.student(used.upn))
    invites.revoke(revoked.id, DESK)
    clock.advance(100 * day)  # all three ended more than 90 days ago (the third expired after 7)
    live = invites.invite(ADA, DESK)
    retention = Retention(store, RetentionPolicy(audit_days=365, grant_days=365, mail_days=90),
                          invites=invites.invites, clock=clock)
    assert retention.purge()["invites"] == 3
    assert [i.id for i in invites.search(InviteFilter())] == [live.id]
    assert expired.id not in {i.id for i in invites.search(InviteFilter())}


def test_a_sender_that_dies_after_the_servers_accept_sends_the_same_link_again(
        smtp_server, invites, outbox, clock, monkeypatch):
    """At-least-once with the seal: it is erased only after the mail is recorded as sent."""
    server = smtp_server("none")
    invite = invites.invite(ADA, DESK)
    sender = OutboxSender(outbox, SmtpMailer(**server.mailer_kwargs(), sender="proofup@uni.test", timeout_seconds=5),
                          MailTemplates(), EmbeddedDirectory(load_seed()), clock=clock,
                          expanders=(links(invites, clock),))

    def die(mail):
        raise SystemExit("the worker was killed between the server's 250 and the record")

    monkeypatch.setattr(outbox, "mark_sent", die)
    with pytest.raises(SystemExit):
        sender.send_due()
    assert token_of(invites, invite) is not None  # still sealed: the mail is not recorded as sent
    monkeypatch.undo()
    clock.advance(sender.claim_seconds + 1)  # the dead sender's claim runs out
    assert sender.send_due().sent == 1
    first, again = server.mailbox.wait_for(2)
    link = re.compile(r"\S+/invite/\S+")
    assert link.findall(first.get_body(("plain",)).get_content()) == link.findall(
        again.get_body(("plain",)).get_content())
    assert first["Message-ID"] == again["Message-ID"] and token_of(invites, invite) is None
