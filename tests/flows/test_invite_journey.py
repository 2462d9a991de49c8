"""An invite in real browsers (Debian's Chromium), axe-checked: the desk invites a demo student, the mail
arrives at a real SMTP server (aiosmtpd), the student opens the link from the mail, continues, signs in at
the simulated AD FS and lands on their diagnosis, and the desk's list shows the invite as used."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.flows.test_helpdesk_journey import act, shot, sign_in_staff
from tests.flows.test_student_journey import adfs_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESK = "hedy.lamarr@uni.test"
STUDENT = "grace.hopper@uni.test"


def test_the_desk_invites_and_the_student_follows_the_link_from_the_mail(mailing_stack, browser, accessible, request):
    stack = mailing_stack
    desk = browser.new_context(ignore_https_errors=True, bypass_csp=True).new_page()
    sign_in_staff(desk, stack, DESK)
    desk.goto(f"{stack.portal_url}/helpdesk/student/{STUDENT}")
    act(desk, "invite", "ticket 5150: new student, stuck in the loop")
    expect(desk.locator(".notice-info")).to_be_visible()
    expect(desk.locator('[data-invite-state="sent"]')).to_have_count(1)
    accessible(desk, "student page with an invite")

    (mail,) = stack.smtp.mailbox.wait_for(1, timeout=30)
    assert mail["To"] == STUDENT
    link = re.search(r"(http\S+/invite/\S+)", mail.get_body(("plain",)).get_content()).group(1)
    assert link.startswith(stack.portal_url)

    student = browser.new_context(ignore_https_errors=True, bypass_csp=True).new_page()
    student.goto(link)
    expect(student.locator("#invite-continue")).to_be_visible()
    accessible(student, "invite page")
    shot(student, request, "01-invite")
    student.click("#invite-continue")
    adfs_sign_in(student, STUDENT, stack.seed.user(STUDENT).password)
    expect(student).to_have_url(re.compile(r"/diagnosis$"))
    shot(student, request, "02-diagnosis")

    student.goto(link)  # spent: the one answer for every dead link
    expect(student.get_by_role("heading", level=1)).to_contain_text("does not work")

    desk.goto(f"{stack.portal_url}/helpdesk/invites?state=used")
    expect(desk.locator('[data-invite-state="used"]')).to_have_count(1)
    expect(desk.locator("#invites")).to_contain_text(STUDENT)
    accessible(desk, "invites")
    shot(desk, request, "03-desk-used")
    desk.click("#mail-problems-link")
    expect(desk.locator("#mail-problems")).to_contain_text("Every mail was delivered.")
    accessible(desk, "mail not delivered")
