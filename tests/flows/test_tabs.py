"""Several tabs of one student: a cancel in one tab reaches the others through the portal's status."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.flows.test_student_journey import adfs_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]
STUDENT = "grace.hopper@uni.test"


def test_cancel_in_one_tab_updates_the_other(demo_stack, page, screenshot, accessible):
    page.goto(demo_stack.portal_url + "/sign-in")
    adfs_sign_in(page, STUDENT, demo_stack.seed.user(STUDENT).password)
    page.locator("#unlock").click()
    expect(page).to_have_url(re.compile(r"/guide$"))
    other = page.context.new_page()
    other.goto(demo_stack.portal_url + "/guide")
    expect(other.locator("#cancel")).to_be_visible()

    page.locator("#cancel").click()
    expect(page.get_by_role("status").first).to_contain_text("Stopped")
    screenshot("cancelled")
    # The other tab learns it from its next poll: no cancel button left, a way back to the status.
    expect(other.locator("#status")).to_have_attribute("data-phase", "cancelled", timeout=10_000)
    expect(other.locator("#cancel")).to_be_hidden()
    expect(other.get_by_role("link", name="See your status")).to_be_visible()
    accessible(other, "guide of a cancelled unlock")
    user = demo_stack.directory.find_user(STUDENT)
    assert not demo_stack.directory.is_member(demo_stack.seed.bypass_group_dn, user.dn)
    other.close()
