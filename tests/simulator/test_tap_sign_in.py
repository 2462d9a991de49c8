"""Signing in to My Sign-Ins with a Temporary Access Pass at the simulated Entra, driven over HTTP.

Entra asks for the pass of an account that holds a usable one instead of federating to AD FS; a wrong pass,
a spent one-time pass, a pass the policy no longer covers and one past its lifetime all fail; "Use your
password instead" goes on to AD FS. The control endpoint refuses a policy that cannot exist.
"""
from __future__ import annotations

import pytest
import requests

from tests.simulator.browserless import Browserless

STUDENT = "grace.hopper@uni.test"


@pytest.fixture
def sim(simulator_factory):
    return simulator_factory("--method-delay", "0")


def make_pass(sim, body: dict) -> str:
    user_id = sim.user(STUDENT).object_id
    answer = sim.session().post(f"{sim.graph_url}/users/{user_id}/authentication/temporaryAccessPassMethods",
                                json=body, headers={"Authorization": "Bearer " + sim.app_token()}, timeout=10)
    assert answer.status_code == 201, answer.text
    return answer.json()["temporaryAccessPass"]


def ask_for_pass(sim):
    browser = Browserless(sim.session(), "http://never")
    page = browser.go(f"{sim.mysignins_url}?login_hint={STUDENT}")
    return browser, page


def test_entra_takes_a_one_time_pass_once_without_ad_fs(sim):
    code = make_pass(sim, {"lifetimeInMinutes": 60, "isUsableOnce": True})
    since = sim.last_seq()
    browser, page = ask_for_pass(sim)
    assert 'name="tap"' in page.text and "/adfs/" not in page.url
    wrong = browser.submit(page, {"tap": "not-the-pass"})
    assert wrong.status == 400 and "incorrect or no longer valid" in wrong.text
    signed_in = browser.submit(wrong, {"tap": code})
    assert 'id="signedInAs"' in signed_in.text and STUDENT in signed_in.text
    paths = [e["path"] for e in sim.requests_log(since)]
    assert not [p for p in paths if p.startswith("/adfs")], paths
    listed = sim.graph_get(f"/users/{sim.user(STUDENT).object_id}/authentication/temporaryAccessPassMethods")
    assert listed.json()["value"][0]["methodUsabilityReason"] == "OneTimeUsed"

    _, again = ask_for_pass(sim)  # a fresh browser: the spent pass is not asked for again
    assert 'name="tap"' not in again.text and 'name="Password"' in again.text  # AD FS's form


def test_a_pass_outside_the_policy_or_its_lifetime_sends_the_student_to_ad_fs(sim):
    make_pass(sim, {"lifetimeInMinutes": 60})
    sim.control("POST", "/tap-policy", {"state": "disabled"})
    _, page = ask_for_pass(sim)
    assert 'name="Password"' in page.text  # Entra federates: the pass is not usable now
    sim.control("POST", "/tap-policy", {"state": "enabled"})
    browser, page = ask_for_pass(sim)
    assert 'name="tap"' in page.text
    instead = browser.submit(page, {}, form_index=1)  # "Use your password instead"
    assert 'name="Password"' in instead.text and "/adfs/ls/" in instead.url
    sim.advance_clock(61 * 60)
    _, page = ask_for_pass(sim)
    assert 'name="Password"' in page.text


def test_the_control_endpoint_refuses_a_policy_that_cannot_exist(sim):
    for body in ({"minimum_minutes": 5}, {"minimum_minutes": 500, "maximum_minutes": 480}, {"state": "maybe"},
                 {"include_group_ids": "all_users"}, {"default_length": 4}, {"colour": "blue"}):
        with pytest.raises(requests.HTTPError):
            sim.control("POST", "/tap-policy", body)
    policy = sim.graph_get("/policies/authenticationMethodsPolicy/authenticationMethodConfigurations/"
                           "TemporaryAccessPass").json()
    assert (policy["minimumLifetimeInMinutes"], policy["maximumLifetimeInMinutes"], policy["state"]) == (60, 480,
                                                                                                         "enabled")
    for body in ({"federatedIdpMfaBehavior": "sometimes"}, {"upn": "nobody@uni.test", "group_id": "g"}):
        with pytest.raises(requests.HTTPError):
            sim.control("POST", "/federation" if "federatedIdpMfaBehavior" in body else "/entra-groups", body)
