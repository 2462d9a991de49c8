"""The desk's "Who will loop" in a real browser (Debian's Chromium): scan a group, watch the bar, read who will
loop, invite them; axe-checked, 320 px, started from the keyboard. Screenshots go to test-artifacts/<test name>/."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.flows.test_helpdesk_journey import DESK, shot, sign_in_staff

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WILL_LOOP = {"ada.lovelace@uni.test", "alan.turing@uni.test", "edsger.dijkstra@uni.test"}


def test_the_desk_scans_a_group_and_invites_who_will_loop(browser, demo_stack, accessible, request):
    stack = demo_stack
    context = browser.new_context(locale="en-GB", ignore_https_errors=True, bypass_csp=True)
    page = context.new_page()
    try:
        sign_in_staff(page, stack, DESK)
        page.click("text=Who will loop")
        expect(page).to_have_url(re.compile(r"/helpdesk/scans$"))
        accessible(page, "scans")
        page.fill("#scan-value", stack.seed.required_group_dn)
        page.fill("#reason-scan", "intake 2026")
        page.focus("#start-scan")
        page.keyboard.press("Enter")  # the form works from the keyboard
        expect(page).to_have_url(re.compile(r"/helpdesk/scans/\d+$"))
        # The bar moves by itself and the page reloads into the results, without anyone pressing anything.
        expect(page.locator("#students")).to_be_visible(timeout=60_000)
        rows = page.locator('#students tr[data-outcome="will_loop"]')
        expect(rows).to_have_count(3)
        assert {rows.nth(i).locator("a").inner_text() for i in range(3)} == WILL_LOOP
        expect(page.locator('[data-count="will_loop"] strong')).to_have_text("3")
        accessible(page, "scan results")
        page.set_viewport_size({"width": 320, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth") <= 320  # the table scrolls, not the page
        shot(page, request, "scan-320px")
        page.set_viewport_size({"width": 1280, "height": 900})
        page.fill("#reason-invite", "before MFA on Monday")
        page.click("#invite")
        expect(page.locator("body")).to_contain_text("3 students got an invite by mail.")
        expect(page.locator("#invited")).to_be_visible()
        shot(page, request, "scan-invited")
        # The list says the scan is done, axe-clean and at 320 px, the table scrolling rather than the page.
        page.click("text=Who will loop")
        expect(page.locator("#scans td[data-state]").first).to_have_text("done")
        accessible(page, "scan list")
        page.set_viewport_size({"width": 320, "height": 800})
        assert page.evaluate("document.documentElement.scrollWidth") <= 320
        shot(page, request, "scan-list-320px")
    finally:
        context.close()
