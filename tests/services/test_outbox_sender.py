"""The worker's mail pass against a real SMTP server (aiosmtpd on loopback): sent, refused, dropped, down."""
from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from app.adapters.directory_embedded import EmbeddedDirectory
from app.adapters.mail_templates import MailTemplates
from app.adapters.mailer import SmtpMailer
from app.adapters.store import OutboxStore
from app.domain.mail import GIVE_UP_AFTER, MailState
from app.services.outbox import OutboxSender

SENDER = "portal@uni.test"
ADA, GRACE, RADIA = "ada.lovelace@uni.test", "grace.hopper@uni.test", "radia.perlman@uni.test"
LOGIN = ("portal", "Smtp-Password-For-Tests-2")
NOTICE = {"when": "2026-09-01T09:00:00+00:00", "minutes": 30, "desk": "+49 30 1234"}


@pytest.fixture
def outbox(store):
    return OutboxStore(store, sender=SENDER)


@pytest.fixture
def directory(seed):
    # Radia has no mail address in this directory.
    users = tuple(replace(u, mail="") if u.upn == RADIA else u for u in seed.users)
    return EmbeddedDirectory(replace(seed, users=users))


def sender_for(outbox, directory, clock, server=None, **mailer) -> OutboxSender:
    kwargs = {**(server.mailer_kwargs() if server else {}), "sender": SENDER, "timeout_seconds": 5.0, **mailer}
    return OutboxSender(outbox, SmtpMailer(**kwargs), MailTemplates(timezone="Europe/Berlin"), directory,
                        clock=clock, batch_size=10)


def queue(outbox, upn=ADA, kind="security_unlocked", **extra):
    assert outbox.queue(kind, upn=upn, params=NOTICE, **extra)
    return outbox.mails_for(upn)[0]


def test_a_queued_notice_goes_out_over_starttls_with_login_to_the_directory_address(
        smtp_server, outbox, directory, clock):
    server = smtp_server("starttls", login=LOGIN)
    mail = queue(outbox)
    report = sender_for(outbox, directory, clock, server, username=LOGIN[0], password=LOGIN[1]).send_due()
    assert (report.sent, report.handled) == (1, 1)
    (received,) = server.mailbox.wait_for(1)
    assert received["Message-ID"] == mail.message_id and received["To"] == ADA
    assert "Ada Lovelace" in received.get_body(("plain",)).get_content()
    stored = outbox.get(mail.id)
    assert stored.state is MailState.SENT and stored.sent_at == clock() and stored.attempts == 1


def test_the_language_is_the_directorys_preferred_one_unless_the_mail_names_one(
        smtp_server, outbox, directory, clock):
    server = smtp_server("tls")
    queue(outbox, upn=GRACE)  # preferredLanguage de-DE in the directory
    queue(outbox, upn=GRACE, locale="en")  # queued during a visit in English
    queue(outbox, upn=ADA)  # no preference anywhere: the portal's mail language
    assert sender_for(outbox, directory, clock, server).send_due().sent == 3
    german, english, default = (m.get_body(("plain",)).get_content() for m in server.mailbox.wait_for(3))
    assert "Guten Tag Grace Hopper" in german and "1. September 2026, 11:00 (Europe/Berlin)" in german
    assert "Hello Grace Hopper" in english and "September 1, 2026, 11:00" in english and "Hello Ada" in default


def test_a_refused_recipient_is_recorded_as_bounced_and_never_tried_again(smtp_server, outbox, directory, clock):
    server = smtp_server("starttls")
    server.faults.refuse_recipient = "550 5.1.1 mailbox unavailable"
    mail = queue(outbox)
    sender = sender_for(outbox, directory, clock, server)
    assert sender.send_due().bounced == 1
    bounced = outbox.get(mail.id)
    assert (bounced.state, bounced.last_code, bounced.attempts) == (MailState.BOUNCED, 550, 1)
    assert "mailbox unavailable" in bounced.last_error
    assert [m.id for m in outbox.problems()] == [mail.id]
    (audit,) = outbox.store.audit_events(ADA, action="mail.bounced")
    assert audit.detail["smtp_code"] == 550
    server.faults.refuse_recipient = ""
    clock.advance(GIVE_UP_AFTER.total_seconds())
    assert sender.send_due().handled == 0 and server.messages == []


@pytest.mark.parametrize("fault", ["defer_data", "drop_during_data"])
def test_a_deferred_or_dropped_mail_is_retried_later_and_sent_exactly_once(
        fault, smtp_server, outbox, directory, clock):
    server = smtp_server("starttls")
    setattr(server.faults, fault, 1)
    mail = queue(outbox)
    sender = sender_for(outbox, directory, clock, server)
    assert sender.send_due().retried == 1
    waiting = outbox.get(mail.id)
    assert waiting.state is MailState.QUEUED and waiting.next_attempt_at == clock() + timedelta(seconds=30)
    assert sender.send_due().handled == 0  # not before its time
    clock.advance(30)
    assert sender.send_due().sent == 1
    assert sender.send_due().handled == 0
    assert [m["Message-ID"] for m in server.mailbox.wait_for(1)] == [mail.message_id]
    assert outbox.get(mail.id).attempts == 2


def test_a_server_that_is_down_is_retried_with_growing_waits_and_nothing_is_lost(
        smtp_server, closed_port, outbox, directory, clock):
    mails = [queue(outbox) for _ in range(3)]
    sender = sender_for(outbox, directory, clock, host="127.0.0.1", port=closed_port, security="none")
    waits = []
    for _ in range(4):
        report = sender.send_due()
        # One attempt per pass: the first mail finds the server down, the others go back untried.
        assert (report.retried, report.untried) == (1, 2)
        first = outbox.get(mails[0].id)
        waits.append((first.next_attempt_at - clock()).total_seconds())
        assert "connection refused" in first.last_error
        clock.now = first.next_attempt_at
    assert waits == [30, 60, 120, 240]
    assert [outbox.get(m.id).attempts for m in mails] == [4, 0, 0]
    server = smtp_server("none", port=closed_port)  # the server is back
    assert sender.send_due().sent == 3
    assert sorted(m["Message-ID"] for m in server.mailbox.wait_for(3)) == sorted(m.message_id for m in mails)


def test_after_three_days_of_failures_a_mail_is_recorded_as_failed(closed_port, outbox, directory, clock):
    mail = queue(outbox)
    sender = sender_for(outbox, directory, clock, host="127.0.0.1", port=closed_port, security="none")
    while outbox.get(mail.id).state is MailState.QUEUED:
        clock.now = max(clock.now, outbox.get(mail.id).next_attempt_at)
        sender.send_due()
    failed = outbox.get(mail.id)
    assert failed.state is MailState.FAILED and failed.last_error.startswith("gave up after")
    assert clock() - failed.queued_at >= GIVE_UP_AFTER
    assert [m.id for m in outbox.problems()] == [mail.id]


def test_a_person_without_an_address_fails_at_once_and_the_rest_still_go(smtp_server, outbox, directory, clock):
    server = smtp_server("starttls")
    no_address = queue(outbox, upn=RADIA)
    gone = queue(outbox, upn="nobody@uni.test")
    fine = queue(outbox, upn=ADA)
    report = sender_for(outbox, directory, clock, server).send_due()
    assert (report.failed, report.sent) == (2, 1)
    assert outbox.get(no_address.id).last_error == "the directory has no mail address for this person"
    assert outbox.get(gone.id).last_error == "the person is not in the directory"
    assert outbox.get(fine.id).state is MailState.SENT


def test_a_wrong_smtp_password_keeps_the_mail_queued_until_the_setting_is_fixed(
        smtp_server, outbox, directory, clock, caplog):
    server = smtp_server("starttls", login=LOGIN)
    mail = queue(outbox)
    report = sender_for(outbox, directory, clock, server, username=LOGIN[0], password="Wrong-Password-9").send_due()
    assert report.retried == 1 and outbox.get(mail.id).last_code == 535
    assert "SMTP settings do not work" in caplog.text and "Wrong-Password-9" not in caplog.text
    clock.advance(30)
    assert sender_for(outbox, directory, clock, server, username=LOGIN[0], password=LOGIN[1]).send_due().sent == 1


def test_many_mails_go_out_one_connection_per_batch_and_a_pass_stops_at_its_limit(
        smtp_server, outbox, directory, clock):
    server = smtp_server("starttls")
    for _ in range(25):
        outbox.queue("security_unlocked", to="student@uni.test", upn=ADA, params=NOTICE)
    sender = sender_for(outbox, directory, clock, server)
    assert sender.send_due(limit=20).sent == 20
    assert sender.send_due().sent == 5
    assert len(server.mailbox.wait_for(25)) == 25 and server.mailbox.connections == 3  # batches of 10


def test_the_worker_sends_queued_mail_every_tick_even_when_a_grant_cycle_fails(
        smtp_server, outbox, directory, clock, store):
    import threading

    from app.adapters.lease import Lease
    from app.worker import run_worker
    from tests.services.test_lease_worker import CountingSweeper

    server = smtp_server("starttls")
    queue(outbox)
    assert run_worker(CountingSweeper(), Lease(store, ttl_seconds=60), once=True,
                      mail=sender_for(outbox, directory, clock, server)) == [1]
    assert len(server.mailbox.wait_for(1)) == 1
    queue(outbox, upn=GRACE)
    stop = threading.Event()
    sweeper = CountingSweeper(fail_first=True)
    worker = threading.Thread(target=run_worker, args=(sweeper, Lease(store, ttl_seconds=60)),
                              kwargs={"interval": 0.2, "stop_event": stop,
                                      "mail": sender_for(outbox, directory, clock, server)})
    worker.start()
    try:
        assert len(server.mailbox.wait_for(2)) == 2
    finally:
        stop.set()
        worker.join(5)
    assert sweeper.cycles >= 1


def crash_a_sender(store, server, point: str) -> None:
    """Run a sender in another process that is killed at `point`; wait for it to die."""
    import os
    import signal
    import subprocess
    import sys

    child = subprocess.run([sys.executable, "-m", "tests.services.outbox_crasher", store.url, str(server.port),
                            server.ca_file, point], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert child.returncode == -signal.SIGKILL, child.stderr


def test_a_sender_killed_after_claiming_leaves_the_mail_to_the_next_one_and_it_goes_out_once(
        smtp_server, outbox, directory, clock, store):
    from app.domain.grants import utc_now
    from app.services.outbox import CLAIM_SECONDS

    server = smtp_server("starttls")
    mail = queue(outbox)
    crash_a_sender(store, server, "after_claim")
    claimed = outbox.get(mail.id)
    assert claimed.state is MailState.SENDING and server.messages == []
    sender = sender_for(outbox, directory, clock, server)
    clock.now = utc_now()
    assert sender.send_due().handled == 0  # the dead sender's claim still stands
    clock.advance(CLAIM_SECONDS + 1)
    assert sender.send_due().sent == 1
    assert [m["Message-ID"] for m in server.mailbox.wait_for(1)] == [mail.message_id]
    assert outbox.get(mail.id).state is MailState.SENT


def test_a_sender_killed_between_the_servers_accept_and_its_record_sends_again_with_the_same_message_id(
        smtp_server, outbox, directory, clock, store):
    """At-least-once, on purpose: the rare duplicate carries the first copy's Message-ID (docs/mail.md)."""
    from app.domain.grants import utc_now
    from app.services.outbox import CLAIM_SECONDS

    server = smtp_server("starttls")
    mail = queue(outbox)
    crash_a_sender(store, server, "after_accept")
    assert len(server.mailbox.wait_for(1)) == 1 and outbox.get(mail.id).state is MailState.SENDING
    clock.now = utc_now() + timedelta(seconds=CLAIM_SECONDS + 1)
    assert sender_for(outbox, directory, clock, server).send_due().sent == 1
    assert [m["Message-ID"] for m in server.mailbox.wait_for(2)] == [mail.message_id] * 2


def test_each_pass_tells_the_metrics_how_its_mail_went(smtp_server, outbox, directory, clock):
    from prometheus_client.parser import text_string_to_metric_families

    from app import metrics
    from app.services.events import Events

    def outcomes() -> dict[str, float]:
        return {s.labels["outcome"]: s.value for f in text_string_to_metric_families(metrics.exposition().decode())
                for s in f.samples if s.name == "proofup_mail_outcomes_total"}

    events = Events()
    metrics.subscribe(events)
    server = smtp_server("starttls")
    server.faults.defer_data = 1  # the first mail gets "421 try again later": it and the rest wait
    sender = sender_for(outbox, directory, clock, server)
    sender.events = events
    queue(outbox)
    queue(outbox, upn=GRACE)
    queue(outbox, upn=RADIA)  # no address in the directory: failed at once
    before = outcomes()
    sender.send_due()
    clock.advance(30)
    sender.send_due()
    after = outcomes()
    # Pass 1: Ada's mail deferred, the two behind it held back untried. Pass 2: Ada and Grace sent, Radia failed.
    assert {k: after.get(k, 0) - before.get(k, 0) for k in ("sent", "retried", "failed", "bounced", "untried")} == {
        "sent": 2, "retried": 1, "failed": 1, "bounced": 0, "untried": 2}
