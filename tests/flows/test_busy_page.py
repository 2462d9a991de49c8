"""When Microsoft asks the portal to wait longer than a page should, the browser shows a busy page that
comes back by itself (Refresh header: no script, no meta tag) once Graph answers again."""
from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from tests.flows.test_student_journey import adfs_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STUDENT = "alan.turing@uni.test"


def test_the_busy_page_retries_by_itself(demo_stack, page, screenshot, accessible):
    page.goto(demo_stack.portal_url + "/sign-in")
    adfs_sign_in(page, STUDENT, demo_stack.seed.user(STUDENT).password)
    expect(page.locator("[data-reason]")).to_have_attribute("data-reason", "half_registered", timeout=20_000)

    demo_stack.control("POST", "/faults", {"path": "/v1.0/$batch", "kind": "429", "seconds": 6, "count": 1})
    started = time.monotonic()
    page.goto(demo_stack.portal_url + "/diagnosis")
    expect(page.get_by_role("heading", level=1)).to_have_text("Microsoft is busy right now")
    expect(page.locator("main")).to_contain_text("tries again by itself in 6 seconds")
    accessible(page, "busy page")
    screenshot("busy")

    # Nobody clicks anything: the page asks again after Graph's Retry-After and shows the diagnosis.
    expect(page.locator("[data-reason]")).to_have_attribute("data-reason", "half_registered", timeout=20_000)
    assert time.monotonic() - started >= 6
    expect(page).to_have_url(re.compile(r"/diagnosis$"))
    screenshot("diagnosis-after-retry")
