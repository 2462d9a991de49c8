"""The portal with an Entra authority: it works for students without the loop, and shows why AD FS is
recommended: a stuck student's Entra sign-in federates to the Microsoft 365 relying party and loops."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from app.demo import DemoStack
from tests.flows.conftest import FAST

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def entra_stack(tmp_path):
    stack = DemoStack(tmp_path / "entra", entra_sign_in=True, worker=False, **FAST).start()
    yield stack
    stack.stop()


def entra_sign_in(stack, page, upn: str) -> None:
    """Start at the portal, give the username to Entra, the password to the federated AD FS."""
    page.goto(stack.portal_url)
    page.get_by_role("link", name="Sign in to start").click()
    page.fill("#i0116", upn)
    page.click("#idSIButton9")
    page.fill("#passwordInput", stack.seed.user(upn).password)
    page.click("#submitButton")


def test_a_student_without_the_loop_signs_in_through_entra(entra_stack, page, screenshot):
    entra_sign_in(entra_stack, page, "margaret.hamilton@uni.test")
    expect(page).to_have_url(re.compile(r"/diagnosis$"))
    expect(page.locator("[data-state]")).to_have_attribute("data-state", "not_required")
    screenshot("diagnosis-via-entra")


def test_a_stuck_student_cannot_sign_in_through_entra(entra_stack, page, screenshot):
    entra_sign_in(entra_stack, page, "ada.lovelace@uni.test")
    # AD FS says "register" and redirects to proof-up, which hands the student back to AD FS: the loop.
    expect(page.locator("#errorMessage")).to_contain_text("set up your account for additional security")
    # The web-theme change of docs/deploy-ad.md: the notice students loop on links to the portal.
    expect(page.locator("#proofupLink")).to_have_attribute("href", entra_stack.portal_url)
    screenshot("adfs-loop-notice")
    assert not page.url.startswith(entra_stack.portal_url)
