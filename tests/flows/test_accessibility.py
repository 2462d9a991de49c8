"""axe-core on every kind of portal page a student can meet, not only those of the happy journey."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from app.demo import DemoStack
from tests.flows.conftest import FAST
from tests.flows.test_student_journey import adfs_sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = DemoStack(tmp_path_factory.mktemp("a11y"), worker=False, **FAST).start()
    yield stack
    stack.stop()


@pytest.mark.parametrize(("upn", "state"), [
    ("barbara.liskov@uni.test", "registered"),
    ("margaret.hamilton@uni.test", "not_required"),
    ("ken.thompson@uni.test", "ineligible"),
    ("radia.perlman@uni.test", "ineligible"),
])
def test_every_diagnosis_is_accessible(stack, page, accessible, screenshot, upn, state):
    page.goto(stack.portal_url + "/sign-in")
    adfs_sign_in(page, upn, stack.seed.user(upn).password)
    expect(page.locator("[data-state]")).to_have_attribute("data-state", state)
    accessible(page, f"diagnosis of {upn}")
    screenshot(state)


def test_error_pages_are_accessible(stack, page, accessible, screenshot):
    page.goto(stack.portal_url + "/no-such-page")
    expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
    accessible(page, "404 page")
    screenshot("not-found")
    page.goto(stack.portal_url + "/sign-in")
    adfs_sign_in(page, "ada.lovelace@uni.test", stack.seed.user("ada.lovelace@uni.test").password)
    expect(page.locator("#unlock")).to_be_visible()
    page.evaluate("document.querySelector('.unlock-form input[name=csrf_token]').value = 'stale'")
    page.locator("#unlock").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("This page has expired")
    accessible(page, "expired form page")
    screenshot("expired-form")
