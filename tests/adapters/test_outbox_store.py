"""The outbox table against real databases (SQLite file and PostgreSQL): queueing, claims, outcomes."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from app.adapters.store import OutboxStore
from app.domain.mail import MailState

UPN = "ada.lovelace@uni.test"


@pytest.fixture
def outbox(store):
    return OutboxStore(store, sender="portal@uni.test")


def test_a_queued_mail_is_due_at_once_with_a_message_id_in_the_senders_domain(outbox, clock):
    assert outbox.queue("security_unlocked", upn="Ada.Lovelace@uni.test", params={"minutes": 30})
    (mail,) = outbox.claim_due(10, claim_seconds=60)
    assert (mail.upn, mail.kind, mail.params, mail.attempts) == (UPN, "security_unlocked", {"minutes": 30}, 1)
    assert mail.state is MailState.SENDING and mail.message_id.endswith("@uni.test>")
    assert mail.queued_at == clock()


def test_one_cause_queues_one_mail(outbox):
    assert outbox.queue("security_unlocked", upn=UPN, dedupe_key="security_unlocked:grant:1")
    assert not outbox.queue("security_unlocked", upn=UPN, dedupe_key="security_unlocked:grant:1")
    assert outbox.queue("security_unlocked", upn=UPN, dedupe_key="security_unlocked:grant:2")
    assert outbox.queue("security_unlocked", upn=UPN) and outbox.queue("security_unlocked", upn=UPN)  # no key
    assert outbox.counts()[MailState.QUEUED] == 4


def test_a_mail_queued_in_a_transaction_that_rolls_back_is_gone(outbox, store):
    with pytest.raises(RuntimeError), store._tx(write=True) as session:  # noqa: SLF001 - the caller's transaction
        outbox.queue("security_unlocked", upn=UPN, session=session)
        raise RuntimeError("the change that caused the mail failed")
    assert outbox.claim_due(10, 60) == []
    with store._tx(write=True) as session:  # noqa: SLF001
        assert outbox.queue("security_unlocked", upn=UPN, session=session, dedupe_key="k")
        assert not outbox.queue("security_unlocked", upn=UPN, session=session, dedupe_key="k")
    assert len(outbox.claim_due(10, 60)) == 1


def test_a_secret_looking_parameter_is_never_stored(outbox, store):
    outbox.queue("security_unlocked", upn=UPN, params={"password": "Hunter2-not-stored", "minutes": 30})
    (mail,) = outbox.claim_due(1, 60)
    assert mail.params == {"password": "(redacted)", "minutes": 30}


def test_a_claimed_mail_is_not_claimed_again_until_the_claim_runs_out(outbox, clock):
    outbox.queue("security_unlocked", upn=UPN)
    (first,) = outbox.claim_due(10, claim_seconds=60)
    assert outbox.claim_due(10, claim_seconds=60) == []
    clock.advance(61)  # the first sender died: its claim ran out
    (again,) = outbox.claim_due(10, claim_seconds=60)
    assert again.id == first.id and again.attempts == 2 and again.claim != first.claim
    assert not outbox.mark_sent(first)  # the dead sender's claim no longer counts
    assert outbox.mark_sent(again) and outbox.get(first.id).state is MailState.SENT


def test_a_retry_waits_and_an_untried_mail_keeps_its_attempt_count(outbox, clock):
    outbox.queue("security_unlocked", upn=UPN)
    outbox.queue("security_unlocked", upn=UPN)
    first, second = outbox.claim_due(10, 60)
    assert outbox.mark_retry(first, error="421 try later", code=421, at=clock() + timedelta(seconds=30))
    assert outbox.mark_untried(second, at=clock() + timedelta(seconds=30))
    assert outbox.claim_due(10, 60) == []
    clock.advance(30)
    again = {m.id: m for m in outbox.claim_due(10, 60)}
    assert (again[first.id].attempts, again[second.id].attempts) == (2, 1)
    assert (again[first.id].last_code, again[first.id].last_error) == (421, "421 try later")


def test_bounced_and_failed_mails_are_listed_for_the_desk(outbox):
    for _ in range(3):
        outbox.queue("security_unlocked", upn=UPN)
    bounced, failed, sent = outbox.claim_due(10, 60)
    assert outbox.mark_ended(bounced, MailState.BOUNCED, error="550 user unknown", code=550)
    assert outbox.mark_ended(failed, MailState.FAILED, error="no mail address")
    assert outbox.mark_sent(sent)
    problems = outbox.problems()
    assert [(m.id, m.state, m.last_code) for m in problems] == [
        (failed.id, MailState.FAILED, None), (bounced.id, MailState.BOUNCED, 550)]
    assert [m.id for m in outbox.mails_for(UPN)] == [sent.id, failed.id, bounced.id]
    with pytest.raises(ValueError):
        outbox.mark_ended(sent, MailState.SENT, error="")


def test_concurrent_senders_never_claim_the_same_mail(outbox, store):
    for _ in range(60):
        outbox.queue("security_unlocked", upn=UPN)
    claimed: list[list[int]] = []
    barrier = threading.Barrier(4)

    def sender() -> None:
        mine: list[int] = []
        barrier.wait()
        while batch := outbox.claim_due(5, claim_seconds=60):
            mine += [m.id for m in batch]
        claimed.append(mine)

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for mine in claimed for i in mine]
    assert len(every) == 60 and len(set(every)) == 60
