"""The service desk's day in a real browser (Debian's Chromium), in English and in German, axe-checked.

Staff sign-in with the one-time code -> now -> look a student up -> unlock with a reason -> the student
registers (simulator control) -> the grant closes; release another; a privileged account is refused;
the audit trail filtered and exported as CSV. Screenshots go to test-artifacts/<test name>/.
"""
from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DESK = "hedy.lamarr@uni.test"
STUDENT = "alan.turing@uni.test"
OTHER = "edsger.dijkstra@uni.test"
ADMIN = "ken.thompson@uni.test"
WORDS = {  # a few words of each language the journey checks (the rest is asserted by ids and data attributes)
    "en": {"now": "Now", "unlocked": "Unlocked.", "released": "Released", "privileged": "privileged account"},
    "de": {"now": "Jetzt", "unlocked": "Freigeschaltet.", "released": "Beendet", "privileged": "privilegiertes Konto"},
}


@pytest.fixture(params=["en", "de"])
def desk_page(request, browser, demo_stack):
    context = browser.new_context(locale={"en": "en-GB", "de": "de-DE"}[request.param], ignore_https_errors=True,
                                  bypass_csp=True, accept_downloads=True)
    page = context.new_page()
    yield request.param, page
    context.close()


def shot(page, request, name: str) -> None:
    from tests.fixtures.browser import ARTIFACTS

    folder = ARTIFACTS / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def act(page, form: str, reason: str, minutes: str | None = None) -> None:
    page.fill(f"#reason-{form}", reason)
    if minutes is not None:
        page.fill(f"#{form}-minutes", minutes)
    page.click(f"#{form}")


def sign_in_staff(page, stack, upn: str) -> None:
    page.goto(stack.portal_url + "/helpdesk")
    page.fill("#userNameInput", upn)
    page.fill("#passwordInput", stack.seed.user(upn).password)
    page.click("#submitButton")
    page.fill("#codeInput", stack.seed.user(upn).staff_mfa)
    page.click("#verifyButton")
    expect(page).to_have_url(re.compile(r"/helpdesk/now$"))


def test_the_desks_day(desk_page, demo_stack, accessible, request):
    language, page = desk_page
    words = WORDS[language]
    stack = demo_stack

    sign_in_staff(page, stack, DESK)  # password, then the one-time code the AD FS policy asks staff for
    expect(page.get_by_role("heading", level=1)).to_have_text(words["now"])
    accessible(page, "now")
    shot(page, request, "01-now")

    page.goto(stack.portal_url + "/helpdesk/look-up")
    page.fill("#q", "Turi")
    page.click("#search")
    expect(page.locator("#results")).to_contain_text(STUDENT)
    accessible(page, "look-up")
    shot(page, request, "02-look-up")
    page.locator("#results a").first.click()
    expect(page.locator("#state")).to_have_attribute("data-state", "stuck")
    accessible(page, "student")
    shot(page, request, "03-student")

    act(page, "grant", "ticket 4711: phone replaced", "20")
    expect(page.locator(".notice-info")).to_contain_text(words["unlocked"])
    assert stack.services.store.open_grant_for(STUDENT).actor == DESK
    shot(page, request, "04-granted")

    # The student registers the app; the worker notices it through Graph and closes the grant.
    stack.control("POST", "/methods", {"upn": STUDENT, "kind": "microsoftAuthenticator", "delay": 0})
    for _ in range(60):
        page.reload()
        if page.locator('[data-grant-state="released"]').count():
            break
        page.wait_for_timeout(1000)
    expect(page.locator('[data-grant-state="released"]')).to_be_visible()
    shot(page, request, "05-closed")

    page.goto(f"{stack.portal_url}/helpdesk/student/{OTHER}")
    act(page, "grant", "walk-in", "30")
    act(page, "release", "student left the desk")
    expect(page.locator(".notice-info")).to_contain_text(words["released"])
    assert stack.services.store.open_grant_for(OTHER) is None

    page.goto(f"{stack.portal_url}/helpdesk/student/{ADMIN}")
    act(page, "grant", "asked by phone", "30")
    expect(page.locator(".notice-error")).to_contain_text(words["privileged"])
    assert stack.services.store.open_grant_for(ADMIN) is None
    accessible(page, "refusal")
    shot(page, request, "06-privileged-refused")

    page.goto(f"{stack.portal_url}/helpdesk/audit")
    page.fill("#student", STUDENT)
    page.fill("#action", "grant.")
    page.click("#apply")
    expect(page.locator("#events")).to_contain_text("grant.intent")
    expect(page.locator("#events")).not_to_contain_text("unlock.refused")
    accessible(page, "audit")
    shot(page, request, "07-audit")
    with page.expect_download() as download:
        page.click("#export")
    text = open(download.value.path(), encoding="utf-8-sig").read()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:5] == ["id", "at", "actor_kind", "actor", "action"]
    assert {r[5] for r in rows[1:]} == {STUDENT} and "ticket 4711: phone replaced" in {r[8] for r in rows[1:]}
    exported = stack.services.store.audit_events(action="audit.exported")
    assert exported and exported[0].actor == DESK


def test_refusals_in_the_browser(browser, demo_stack, accessible, request):
    """A stale second tab, a reason the browser let through empty, an auditor, a student session: nothing changes."""
    stack = demo_stack
    context = browser.new_context(ignore_https_errors=True, bypass_csp=True)
    first = context.new_page()
    sign_in_staff(first, stack, DESK)
    first.goto(f"{stack.portal_url}/helpdesk/student/{STUDENT}")
    second = context.new_page()
    second.goto(f"{stack.portal_url}/helpdesk/student/{STUDENT}")
    act(first, "grant", "ticket 1", "30")
    act(second, "grant", "ticket 2", "30")  # made before the first tab's unlock: stale
    expect(second.locator(".notice-error")).to_contain_text("changed since this page was loaded")
    assert stack.services.store.open_grant_for(STUDENT).reason == "ticket 1"
    accessible(second, "stale form")
    shot(second, request, "01-stale")

    second.reload()
    second.evaluate("document.querySelector('#reason-release').removeAttribute('required')")
    second.click("#release")
    expect(second.locator(".notice-error")).to_contain_text("Say why")
    assert stack.services.store.open_grant_for(STUDENT) is not None
    context.close()

    auditor = browser.new_context(ignore_https_errors=True, bypass_csp=True).new_page()
    sign_in_staff(auditor, stack, "katherine.johnson@uni.test")
    auditor.goto(f"{stack.portal_url}/helpdesk/student/{STUDENT}")
    expect(auditor.locator("#release-form")).to_have_count(0)
    accessible(auditor, "auditor's view")
    shot(auditor, request, "02-auditor")

    student = browser.new_context(ignore_https_errors=True, bypass_csp=True).new_page()
    student.goto(stack.portal_url + "/sign-in")
    student.fill("#userNameInput", OTHER)
    student.fill("#passwordInput", stack.seed.user(OTHER).password)
    student.click("#submitButton")
    student.wait_for_url(re.compile(r"/diagnosis$"))
    response = student.goto(stack.portal_url + "/helpdesk/now")
    assert response.status == 403
    expect(student.get_by_role("heading", level=1)).to_have_text("Staff only")
    shot(student, request, "03-student-at-the-staff-door")
