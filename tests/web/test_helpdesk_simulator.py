"""Staff sign-in with the real MSAL adapter against the simulated AD FS: MFA must be in the signed id_token."""
from __future__ import annotations

import pytest

from app.demo import DemoStack, adfs_form_post

DESK = "hedy.lamarr@uni.test"
ADA = "ada.lovelace@uni.test"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = DemoStack(tmp_path_factory.mktemp("sim"), worker=False, mail=False, method_delay_seconds=0.0).start()
    yield stack
    stack.stop()


def staff_sign_in(stack, client, upn: str, code: str = ""):
    auth_uri = client.get("/helpdesk/sign-in").headers["Location"]
    assert "prompt=login" in auth_uri  # staff always type their credentials afresh
    return adfs_form_post(auth_uri, upn, stack.seed.user(upn).password, stack.settings.ca_bundle, code=code)


def test_a_staff_account_passes_the_one_time_code_and_gets_a_staff_session(stack):
    client = stack.app.test_client()
    posted = staff_sign_in(stack, client, DESK, code=stack.seed.user(DESK).staff_mfa)
    assert posted.action.endswith("/auth/callback")
    hop = client.post("/auth/callback", data=posted.fields)
    response = client.get(hop.headers["Location"])  # the same-site hop finishes the sign-in
    assert response.status_code == 302 and response.headers["Location"].endswith("/helpdesk/now")
    assert client.get("/helpdesk/now").status_code == 200


def test_a_wrong_code_never_reaches_the_portal(stack):
    posted = staff_sign_in(stack, stack.app.test_client(), DESK, code="000000")
    assert not posted.action.endswith("/auth/callback")


def test_a_password_only_id_token_is_refused_at_the_staff_door(stack):
    # Ada has no second factor: the authority's signed token says password only, so no staff session.
    client = stack.app.test_client()
    posted = staff_sign_in(stack, client, ADA)
    response = client.post("/auth/callback", data=posted.fields, follow_redirects=True)
    assert response.status_code == 403
    assert client.get("/helpdesk/now").status_code == 302
    refused = [e for e in stack.services.store.audit_events(action="helpdesk.refused") if e.actor == ADA]
    assert refused and refused[0].detail["refusal"] == "no_mfa"
