"""Sign-in in a real browser: the answer is finished only in the browser that started it, Back is safe.

The demo serves the portal over http on 127.0.0.1 and the simulated AD FS over https on another port: the
authority's form_post is a cross-site POST, so the portal's SameSite=Lax cookies only come with the
same-site hop to /auth/complete.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.flows.test_student_journey import adfs_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]
STUDENT = "ada.lovelace@uni.test"


def test_back_after_sign_in_keeps_the_student_signed_in(demo_stack, page, screenshot):
    page.goto(demo_stack.portal_url + "/sign-in")
    adfs_sign_in(page, STUDENT, demo_stack.seed.user(STUDENT).password)
    expect(page).to_have_url(re.compile(r"/diagnosis$"))
    for _ in range(2):
        page.go_back()
        page.wait_for_load_state()
        screenshot("after-back")
        expect(page.get_by_text("already used")).to_have_count(0)
        page.goto(demo_stack.portal_url + "/diagnosis")
        expect(page).to_have_url(re.compile(r"/diagnosis$"))  # still signed in: not sent to the start page
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "stuck")


def test_an_answer_carried_to_another_browser_is_refused(demo_stack, browser, screenshot):
    """Login CSRF in real browsers: the attacker's own answer, auto-posted from a page into the victim's."""
    attacker = browser.new_context(ignore_https_errors=True).new_page()
    captured: dict[str, str] = {}

    def keep_answer(route):
        captured.update(dict(pair.split("=", 1) for pair in (route.request.post_data or "").split("&")))
        route.abort()

    attacker.route(re.compile(r".*/auth/callback$"), keep_answer)
    attacker.goto(demo_stack.portal_url + "/sign-in")
    other = "grace.hopper@uni.test"
    adfs_sign_in(attacker, other, demo_stack.seed.user(other).password)
    attacker.wait_for_timeout(500)
    assert {"code", "state"} <= set(captured)

    victim = browser.new_context(ignore_https_errors=True).new_page()
    victim.goto(demo_stack.portal_url + "/")
    from urllib.parse import unquote_plus

    inputs = "".join(f'<input type="hidden" name="{k}" value="{unquote_plus(v)}">' for k, v in captured.items())
    victim.set_content(f'<form method="post" action="{demo_stack.portal_url}/auth/callback">{inputs}</form>')
    with victim.expect_navigation():
        victim.evaluate("document.forms[0].submit()")
    expect(victim.get_by_role("heading", level=1)).to_contain_text("started in another browser")
    victim.goto(demo_stack.portal_url + "/diagnosis")
    expect(victim).not_to_have_url(re.compile(r"/diagnosis$"))  # nobody is signed in there
    attacker.context.close()
    victim.context.close()
