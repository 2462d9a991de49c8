"""In Debian's Chromium: a stuck student loops between AD FS and My Sign-Ins, then registers once in the bypass group."""
from __future__ import annotations

import time

import pytest

STUDENT = "ada.lovelace@uni.test"
AUTHENTICATOR = "#microsoft.graph.microsoftAuthenticatorAuthenticationMethod"


@pytest.mark.browser
def test_stuck_student_loops_until_bypassed_then_registers(page, simulator_factory, screenshot):
    sim = simulator_factory("--method-delay", "1")  # and a 1-second notice countdown
    notices: list[str] = []
    page.on("framenavigated", lambda frame: notices.append(frame.url)
            if frame == page.main_frame and "/adfs/ls/" in frame.url else None)

    page.goto(sim.mysignins_url)
    page.fill("#i0116", STUDENT)
    page.click("#idSIButton9")
    page.fill("#passwordInput", sim.user(STUDENT).password)
    screenshot("adfs-sign-in")
    page.click("#submitButton")
    page.wait_for_selector("#errorMessage >> text=automatically redirected")
    screenshot("adfs-notice")

    # No error, no password prompt: the countdown sends the browser to security-info, which comes straight back.
    deadline = time.monotonic() + 20
    while len(notices) < 4 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert len(notices) >= 4, notices
    assert page.locator("#passwordInput").count() == 0
    screenshot("adfs-notice-again")

    sim.set_membership(STUDENT, "bypass", True)
    page.wait_for_selector("#signedInAs", timeout=15_000)  # the next turn of the loop opens My Sign-Ins
    assert page.inner_text("#signedInAs") == STUDENT
    screenshot("security-info")
    page.click("#addAuthenticator")
    screenshot("authenticator-qr")
    page.click("#scannedButton")
    page.wait_for_selector("#addedNotice")
    screenshot("registered")

    deadline = time.monotonic() + 10
    kinds: list[str] = []
    while AUTHENTICATOR not in kinds and time.monotonic() < deadline:
        time.sleep(0.3)
        body = sim.graph_get(f"/users/{sim.user(STUDENT).object_id}/authentication/methods").json()
        kinds = [m["@odata.type"] for m in body["value"]]
    assert AUTHENTICATOR in kinds
