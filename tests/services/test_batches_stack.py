"""Weekly batches on the demo stack: the simulator's Graph (bulk diagnosis), aiosmtpd for the mail, a real database.

Upload -> the worker's bulk check -> send (invites at the SMTP server) -> the dashboard follows a student who
signs in, unlocks and registers -> reminders on the schedule, once per step, also across a crash -> close.
"""
from __future__ import annotations

from datetime import timedelta

import pytest

from app.demo import DemoStack
from app.domain.actors import WORKER, Actor
from app.domain.audit import AuditQuery
from app.domain.batches import BatchState, Progress
from app.domain.grants import utc_now
from app.services.batches import BatchRefused
from app.wiring import build_mail_sender

DESK = Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="ticket 4711: week 48")
AUDITOR = Actor.staff("katherine.johnson@uni.test", role="auditor", reason="just looking")
CSV = ("upn;name;mail\n"
       "ada.lovelace@uni.test;Ada;\nalan.turing@uni.test;Alan;alan@home.test\ngrace.hopper@uni.test;Grace;\n"
       "barbara.liskov@uni.test;Barbara;\nken.thompson@uni.test;Ken;\n").encode()


@pytest.fixture
def stack(tmp_path, smtp_server):
    server = smtp_server("none")
    stack = DemoStack(tmp_path / "demo", worker=False, mail=False, method_delay_seconds=0.0, smtp_host=server.host,
                      smtp_port=server.port, smtp_security="none", smtp_from="proofup@uni.test").start()
    stack.smtp = server
    yield stack
    stack.stop()


def checked_batch(stack) -> int:
    desk = stack.services.batches
    batch = desk.upload(DESK, CSV, label="Week 48", file_name="w48.csv")
    desk.work()
    assert desk.batches.get(batch.id).state is BatchState.READY
    return batch.id


def progress(stack, batch_id: int) -> dict[str, Progress]:
    return {line.upn: line.progress for line in stack.services.batches.dashboard(batch_id).lines}


def later(stack, days: float) -> None:
    stack.services.batches.clock = lambda: utc_now() + timedelta(days=days)


def test_a_batch_of_the_demo_is_checked_in_few_graph_requests_sent_followed_reminded_and_closed(stack):
    desk, mailer = stack.services.batches, build_mail_sender(stack.services)
    batch_id = checked_batch(stack)
    assert progress(stack, batch_id) == {
        "ada.lovelace@uni.test": Progress.NOT_SENT, "alan.turing@uni.test": Progress.NOT_SENT,
        "grace.hopper@uni.test": Progress.NOT_SENT, "barbara.liskov@uni.test": Progress.SKIPPED,
        "ken.thompson@uni.test": Progress.SKIPPED}

    with pytest.raises(BatchRefused):
        desk.send(AUDITOR, batch_id)
    assert desk.send(DESK, batch_id) == 3
    with pytest.raises(BatchRefused) as again:
        desk.send(DESK, batch_id)  # a second click (or a second desk member) sends nothing more
    assert again.value.code == "not_ready"
    mailer.send_due()
    mails = stack.smtp.mailbox.wait_for(3, timeout=20)
    # Alan's invite goes where the preview showed (the file's address), the others' to the directory's.
    assert sorted(m["To"] for m in mails) == ["ada.lovelace@uni.test", "alan@home.test", "grace.hopper@uni.test"]
    assert set(progress(stack, batch_id).values()) == {Progress.INVITED, Progress.SKIPPED}

    # Ada signs in through her invite and unlocks; the dashboard follows her (database reads only).
    ada = stack.services.invites.search(_batch_filter(batch_id, "ada.lovelace@uni.test"))[0]
    stack.services.invites.redeem(ada.id, "ada.lovelace@uni.test", Actor.student("ada.lovelace@uni.test"))
    assert progress(stack, batch_id)["ada.lovelace@uni.test"] is Progress.SIGNED_IN
    stack.services.onboarding.unlock("ada.lovelace@uni.test", actor=Actor.student("ada.lovelace@uni.test"),
                                     invite_id=ada.id)
    assert progress(stack, batch_id)["ada.lovelace@uni.test"] is Progress.UNLOCKED

    # Day 1: nothing due. Day 2: one reminder each for Alan and Grace (Ada is past the invite), and only one.
    later(stack, 1)
    assert desk.remind_due() == 0
    later(stack, 2.01)
    assert desk.remind_due() == 2
    assert desk.remind_due() == 0  # the next pass finds the reminder made: never two for one step
    mailer.send_due()
    # 3 invites, the notice of Ada's unlock and the 2 reminders (Grace reads German).
    reminders = [m for m in stack.smtp.mailbox.wait_for(6, timeout=20)
                 if m["Subject"].startswith(("Reminder", "Erinnerung"))]
    assert sorted(m["To"] for m in reminders) == ["alan@home.test", "grace.hopper@uni.test"]
    lines = {line.upn: line for line in desk.dashboard(batch_id).lines}
    assert lines["alan.turing@uni.test"].reminders == 1 and lines["ada.lovelace@uni.test"].reminders == 0
    assert lines["alan.turing@uni.test"].progress is Progress.INVITED

    # Day 6: the second step; a week later nothing more (the schedule has two steps).
    later(stack, 6)
    assert desk.remind_due() == 2
    later(stack, 13)
    assert desk.remind_due() == 0

    # Close: Ada's open grant is released, the unused invites are taken back, no reminder ever again.
    later(stack, 0)
    revoked, released = desk.close(DESK, batch_id)
    assert (revoked, released) == (2, 1)
    assert stack.services.store.open_grant_for("ada.lovelace@uni.test") is None
    final = progress(stack, batch_id)
    assert final["alan.turing@uni.test"] is Progress.REVOKED and desk.batches.get(batch_id).state is BatchState.CLOSED
    later(stack, 30)
    assert desk.remind_due() == 0
    actions = [e.action for e in stack.services.store.search_audit(AuditQuery(action="batch."), limit=50)]
    assert {"batch.uploaded", "batch.checked", "batch.sent", "batch.closed", "batch.close_finished"} <= set(actions)


def test_a_send_cut_off_by_a_crash_is_finished_by_the_worker_once(stack):
    desk = stack.services.batches
    batch_id = checked_batch(stack)
    desk.batches.mark_sent(DESK, batch_id)  # the click turned the batch sent, then the process died
    assert desk.resume_sending() == 0  # too soon: the click may still be inviting
    later(stack, 0.01)
    assert desk.resume_sending() == 3 and desk.resume_sending() == 0


def test_an_export_is_formula_safe_and_audited(stack):
    desk = stack.services.batches
    batch = desk.upload(DESK, b"upn,name\nada.lovelace@uni.test,=cmd|' /C calc'!A0\n-x@uni.test,x\n", file_name="x.csv")
    board = desk.export(DESK, batch.id, client="10.0.0.9")
    assert [line.skip for line in board.lines] == ["formula", "formula"]
    (event,) = stack.services.store.search_audit(AuditQuery(action="batch.exported"))
    assert event.detail["rows"] == 2 and event.actor == DESK.id


def _batch_filter(batch_id: int, upn: str):
    from app.adapters.store.invites import InviteFilter

    return InviteFilter(upn=upn, batch_id=batch_id)


def test_the_worker_leaves_batches_past_their_last_reminder_and_old_cut_off_sends_alone(stack):
    desk = stack.services.batches
    batch_id = checked_batch(stack)
    desk.batches.mark_sent(DESK, batch_id)  # cut off, and nobody looked for two days
    later(stack, 2)
    assert desk.resume_sending() == 0 and desk.remind_due() == 0  # no invites at all: no reminders either
    later(stack, 0.01)
    assert desk.resume_sending() == 3
    later(stack, 5 + 7 + 0.1)
    assert desk.remind_due() == 0  # past the last step and its slack: the batch is not even read


def test_only_the_desk_an_admin_or_the_worker_change_a_batch(stack):
    desk = stack.services.batches
    for actor, code in ((AUDITOR, "read_only"), (Actor.student("ada.lovelace@uni.test"), "not_allowed")):
        with pytest.raises(BatchRefused) as refused:
            desk.upload(actor, CSV, file_name="w48.csv")
        assert refused.value.code == code
    assert desk.recent() == [] and desk.upload(Actor.cli("admin", reason="intake"), CSV).rows_total == 5


def test_closing_a_batch_releases_only_the_grants_its_own_invites_led_to(stack):
    ada, desk = "ada.lovelace@uni.test", stack.services.batches
    first = checked_batch(stack)
    desk.send(DESK, first)
    second = checked_batch(stack)  # a week later Ada is on the list again: the new invite replaces the first
    desk.send(DESK, second)
    (through_second,) = stack.services.invites.search(_batch_filter(second, ada))
    stack.services.invites.redeem(through_second.id, ada, Actor.student(ada))
    stack.services.onboarding.unlock(ada, actor=Actor.student(ada), invite_id=through_second.id)
    grant = stack.services.store.open_grant_for(ada)
    # Each dashboard counts the unlock where it came from (the older one says it happened elsewhere).
    assert progress(stack, first)[ada] is Progress.ELSEWHERE and progress(stack, second)[ada] is Progress.UNLOCKED
    assert desk.dashboard(first).counts.get("unlocked", 0) == 0

    assert desk.close(DESK, first)[1] == 0  # the older batch's close leaves her unlock (the newer batch's) open
    assert stack.services.store.open_grant_for(ada).id == grant.id
    assert desk.close(DESK, second)[1] == 1
    assert stack.services.store.open_grant_for(ada) is None
    (ended,) = stack.services.store.search_audit(AuditQuery(upn=ada, action="grant.cancelled"), limit=5)
    assert ended.actor == DESK.id and ended.grant_id == grant.id
    finished = {e.detail["batch_id"]: e.detail["released"]
                for e in stack.services.store.search_audit(AuditQuery(action="batch.close_finished"), limit=5)}
    assert finished == {first: 0, second: 1}


def test_closing_a_batch_leaves_an_unlock_the_student_made_on_their_own(stack):
    ada, desk = "ada.lovelace@uni.test", stack.services.batches
    batch_id = checked_batch(stack)
    desk.send(DESK, batch_id)
    stack.services.onboarding.unlock(ada, actor=Actor.student(ada))  # signed in without the link
    assert progress(stack, batch_id)[ada] is Progress.UNLOCKED  # the batch's progress all the same
    assert desk.close(DESK, batch_id) == (3, 0)
    assert stack.services.store.open_grant_for(ada) is not None
