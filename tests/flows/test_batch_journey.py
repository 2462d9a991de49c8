"""A weekly batch in real browsers (Debian's Chromium), axe-checked: the desk uploads a CSV of demo students,
the worker checks it (progress bar), the desk sends, the invites arrive at a real SMTP server (aiosmtpd), a
student opens the link from the mail, signs in, unlocks and registers in the simulated My Sign-Ins, and the
dashboard shows it without a reload; a reminder goes out for a student who did nothing (the batch service's
clock moved two days on); the batch closes."""
from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from app.domain.grants import utc_now
from tests.flows.test_helpdesk_journey import act, shot, sign_in_staff
from tests.flows.test_student_journey import adfs_sign_in, open_my_sign_ins

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESK = "hedy.lamarr@uni.test"
STUDENT = "ada.lovelace@uni.test"
IDLE = ("alan.turing@uni.test", "grace.hopper@uni.test")
CSV = ("\ufeffupn;name\r\n" + "".join(f"{upn};\r\n" for upn in (STUDENT, *IDLE)) +
       "barbara.liskov@uni.test;Barbara\r\nken.thompson@uni.test;Ken\r\n").encode()


def test_a_weekly_batch_from_upload_to_close(mailing_stack, browser, accessible, request):
    stack = mailing_stack
    desk = browser.new_context(ignore_https_errors=True, bypass_csp=True).new_page()
    sign_in_staff(desk, stack, DESK)
    desk.goto(f"{stack.portal_url}/helpdesk/batches")
    accessible(desk, "batches")
    desk.set_input_files("#batch-file", files=[{"name": "week48.csv", "mimeType": "text/csv", "buffer": CSV}])
    desk.fill("#batch-label", "Week 48")
    act(desk, "upload", "ticket 4711: week 48")
    expect(desk).to_have_url(re.compile(r"/helpdesk/batches/\d+$"))
    # The worker checks the rows; the page polls and reloads itself once the preview is ready.
    expect(desk.locator("#send")).to_be_visible(timeout=30_000)
    expect(desk.locator('tr[data-progress="not_sent"]')).to_have_count(3)
    expect(desk.locator("#students")).to_contain_text("already registered")
    expect(desk.locator("#students")).to_contain_text("privileged account")
    accessible(desk, "batch preview")
    shot(desk, request, "01-preview")
    desk.set_viewport_size({"width": 320, "height": 800})
    assert desk.evaluate("document.documentElement.scrollWidth") <= 320  # the table scrolls, not the page
    desk.set_viewport_size({"width": 1280, "height": 800})

    act(desk, "send", "ticket 4711: invites for week 48")
    expect(desk.locator(".notice-info")).to_contain_text("3 invites")
    mails = stack.smtp.mailbox.wait_for(3, timeout=30)
    assert sorted(m["To"] for m in mails) == sorted((STUDENT, *IDLE))
    mail = next(m for m in mails if m["To"] == STUDENT)
    link = re.search(r"(http\S+/invite/\S+)", mail.get_body(("plain",)).get_content()).group(1)
    expect(desk.locator('tr[data-progress="invited"]')).to_have_count(3, timeout=30_000)
    accessible(desk, "batch dashboard")
    shot(desk, request, "02-sent")

    student = browser.new_context(ignore_https_errors=True, bypass_csp=True).new_page()
    password = stack.seed.user(STUDENT).password
    student.goto(link)
    student.click("#invite-continue")
    adfs_sign_in(student, STUDENT, password)
    expect(student).to_have_url(re.compile(r"/diagnosis$"))
    student.locator("#unlock").click()
    expect(student).to_have_url(re.compile(r"/guide$"))
    mysignins = open_my_sign_ins(student, STUDENT, password)
    mysignins.locator("#addAuthenticator").click()
    mysignins.locator("#scannedButton").click()
    expect(mysignins.locator("#addedNotice")).to_be_visible()
    mysignins.close()
    expect(student.locator("#status")).to_have_attribute("data-phase", "done", timeout=30_000)

    # The dashboard follows without a reload: Ada registered and was released.
    expect(desk.locator('tr[data-progress="done"]')).to_have_count(1, timeout=30_000)
    expect(desk.locator('tr[data-progress="done"]')).to_contain_text(STUDENT)
    shot(desk, request, "03-registered")

    # Two days on, Alan and Grace (who did nothing) get one reminder each with a new link.
    stack.services.batches.clock = lambda: utc_now() + timedelta(days=2, minutes=1)
    reminders = reminder_mails(stack, 2)
    assert sorted(m["To"] for m in reminders) == sorted(IDLE)
    expect(desk.locator('td[data-field="reminders"]').filter(has_text=re.compile(r"^1 \("))).to_have_count(
        2, timeout=30_000)

    act(desk, "close", "week 48 done")
    expect(desk.locator(".notice-info")).to_contain_text("closed")
    expect(desk.locator('tr[data-progress="revoked"]')).to_have_count(2)
    expect(desk.locator("#close")).to_have_count(0)
    accessible(desk, "batch closed")
    shot(desk, request, "04-closed")
    stack.services.batches.clock = lambda: utc_now() + timedelta(days=6)
    desk.wait_for_timeout(3000)  # a few worker ticks past the second step: a closed batch reminds nobody
    assert len(reminder_mails(stack, 2)) == 2

    # Alan's page at the desk names the batch (a link back to its dashboard) and its two invites' states.
    dashboard = desk.url
    desk.goto(f"{stack.portal_url}/helpdesk/student/{IDLE[0]}")
    expect(desk.locator("#student-batches li[data-invite-state]")).to_have_count(2)
    expect(desk.locator('#student-batches li[data-invite-state="revoked"]')).to_have_count(2)
    accessible(desk, "student's batches")
    desk.set_viewport_size({"width": 320, "height": 800})
    assert desk.evaluate("document.documentElement.scrollWidth") <= 320
    desk.set_viewport_size({"width": 1280, "height": 800})
    desk.locator("#student-batches a", has_text="Week 48").click()
    expect(desk).to_have_url(dashboard)


def reminder_mails(stack, at_least: int, seconds: float = 30.0) -> list:
    """Wait (bounded) until at least this many reminders arrived (Grace reads German); return every one that did."""
    deadline = time.monotonic() + seconds
    while True:
        found = [m for m in stack.smtp.mailbox.messages if m["Subject"].startswith(("Reminder", "Erinnerung"))]
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.2)
