"""A stuck student takes the Temporary Access Pass in a real browser (Debian's Chromium), never reaching AD FS.

sign in -> diagnosis -> "Get a one-time pass" (shown once) -> reload and Back show no pass -> My Sign-Ins
asks Entra, which takes the pass instead of federating to AD FS -> the Authenticator is added -> the portal
confirms it and deletes the pass. The pass is in no table and not in the simulator's request log.
"""
from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import MetaData, inspect, select

from tests.flows.conftest import FAST
from tests.flows.test_student_journey import STUDENT, adfs_sign_in, screenshot_of

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def tap_stack(tmp_path):
    """The demo stack offering both remedies (the pass first)."""
    from app.demo import DemoStack

    stack = DemoStack(tmp_path / "demo", remedy="both", **FAST).start()
    yield stack
    stack.stop()


def every_row(store) -> str:
    metadata = MetaData()
    names = inspect(store.engine).get_table_names()
    metadata.reflect(store.engine, only=names)
    with store.engine.connect() as db:
        return "\n".join(f"{t.name}: {tuple(r)!r}" for t in metadata.sorted_tables for r in db.execute(select(t)))


def test_a_stuck_student_registers_with_a_one_time_pass_without_ad_fs(tap_stack, page, screenshot, accessible):
    stack = tap_stack
    password = stack.seed.user(STUDENT).password
    user = stack.directory.find_user(STUDENT)

    page.goto(stack.portal_url)
    page.get_by_role("link", name="Sign in to start").click()
    adfs_sign_in(page, STUDENT, password)
    expect(page).to_have_url(re.compile(r"/diagnosis$"))
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "stuck")
    expect(page.locator("#get-tap")).to_be_visible()
    expect(page.locator("#unlock")).to_be_visible()  # the bypass is offered too ("both"), second
    accessible(page, "diagnosis with both remedies")
    screenshot("diagnosis-offers-a-pass")

    page.locator("#get-tap").click()
    code = page.locator("#tap-code").inner_text().strip()
    assert len(code) >= 8
    expect(page.locator("#status")).to_have_attribute("data-phase", re.compile("waiting"))
    accessible(page, "the pass, shown once")
    screenshot("pass-shown-once")
    page.set_viewport_size({"width": 320, "height": 800})  # a small phone: the pass wraps, nothing overflows
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    expect(page.locator("#tap-code")).to_be_visible()
    screenshot("pass-at-320px")
    page.set_viewport_size({"width": 1280, "height": 800})
    assert not stack.directory.is_member(stack.seed.bypass_group_dn, user.dn)  # a pass needs no bypass group

    page.reload()  # the POST again: the grant is open, so the guide comes without a pass
    expect(page.locator("#tap-shown-once")).to_be_visible()
    expect(page.locator("#tap-code")).to_have_count(0)
    page.go_back()
    expect(page.locator("#tap-code")).to_have_count(0)
    page.go_forward()
    expect(page.locator("#tap-code")).to_have_count(0)
    assert code not in page.content()
    page.goto(stack.portal_url + "/guide")
    expect(page.locator("#tap-shown-once")).to_be_visible()
    screenshot("guide-without-the-pass")

    before = max([0, *(e["seq"] for e in stack.control("GET", "/requests")["requests"])])
    with page.context.expect_page() as opened:
        page.locator("#mysignins").click()
    mysignins = opened.value
    mysignins.locator("#i0118").wait_for()
    screenshot_of(mysignins, screenshot, "entra-asks-for-the-pass")
    mysignins.fill("#i0118", code)
    mysignins.locator("#idSIButton9").click()
    mysignins.locator("#addAuthenticator").click()
    mysignins.locator("#scannedButton").click()
    expect(mysignins.locator("#addedNotice")).to_be_visible()
    screenshot_of(mysignins, screenshot, "mysignins-registered")
    mysignins.close()
    paths = [e["path"] for e in stack.control("GET", f"/requests?since={before}")["requests"]]
    assert "/common/tap" in paths and "/security-info/callback" in paths
    assert not [p for p in paths if p.startswith("/adfs")], f"the pass sign-in reached AD FS: {paths}"

    expect(page.locator("#status")).to_have_attribute("data-phase", "done", timeout=30_000)
    screenshot("guide-done")
    grant = stack.services.store.grants_for(STUDENT)[0]
    assert (grant.state, grant.remedy.value) == ("released", "tap")
    entra = [u for u in stack.control("GET", "/users")["users"] if u["upn"] == STUDENT][0]
    assert "temporaryAccessPass" not in entra["methods"] and "microsoftAuthenticator" in entra["methods"]

    simulator_log = json.dumps(stack.control("GET", "/requests")["requests"])
    assert "/common/tap" in simulator_log
    assert code not in simulator_log, "the pass reached the simulator's request log"
    tables = every_row(stack.services.store)
    assert "grant.tap_deleted" in tables and code not in tables, "the pass reached a table"
