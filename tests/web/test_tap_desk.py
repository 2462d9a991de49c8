"""The service desk issues a Temporary Access Pass for a student in front of them: a reason, shown once, audited."""
from __future__ import annotations

import re

from app.demo import adfs_form_post
from tests.web.test_tap import default_policy, passes_of, stack  # noqa: F401 (fixtures)


def desk_client(stack):
    """A helpdesk member signed in to the console (password and the one-time code at the simulated AD FS)."""
    desk = "hedy.lamarr@uni.test"
    client = stack.app.test_client()
    auth_uri = client.get("/helpdesk/sign-in").headers["Location"]
    posted = adfs_form_post(auth_uri, desk, stack.seed.user(desk).password, stack.settings.ca_bundle,
                            code=stack.seed.user(desk).staff_mfa)
    client.get(client.post("/auth/callback", data=posted.fields).headers["Location"])
    page = client.get("/helpdesk/student/alan.turing@uni.test")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    return client, re.search(r'name="csrf_token" value="([^"]+)"', html).group(1), html


def test_the_desk_issues_a_pass_with_a_reason_and_sees_it_once(stack):
    upn = "alan.turing@uni.test"
    client, token, page = desk_client(stack)
    assert 'id="issue-tap"' in page
    url = f"/helpdesk/student/{upn}/tap"
    refused = client.post(url, data={"csrf_token": token, "reason": "", "seen_grant": "0"}, follow_redirects=True)
    assert "Say why" in refused.get_data(as_text=True) and passes_of(stack, upn) == []
    shown = client.post(url, data={"csrf_token": token, "reason": "INC-4711 student at the desk with card",
                                   "seen_grant": "0"}).get_data(as_text=True)
    code = re.search(r'id="tap-code"[^>]*>([^<]+)<', shown).group(1).strip()
    assert len(code) >= 8 and len(passes_of(stack, upn)) == 1
    again = client.get(f"/helpdesk/student/{upn}").get_data(as_text=True)
    assert 'id="tap-code"' not in again and 'id="open-pass"' in again and 'id="extend-form"' not in again
    trail = stack.services.store.audit_events(upn)
    issued = [e for e in trail if e.action == "helpdesk.tap"][0]
    assert issued.reason == "INC-4711 student at the desk with card" and issued.detail["lifetime_minutes"] == 60
    assert all(code not in repr(e) for e in trail)
    grant = stack.services.store.open_grant_for(upn)
    client.post(f"/helpdesk/student/{upn}/release", data={"csrf_token": token, "reason": "INC-4711 done",
                                                           "seen_grant": str(grant.id)})
    assert passes_of(stack, upn) == [] and stack.services.store.open_grant_for(upn) is None


def test_the_desk_reads_why_the_tenant_refused_and_that_unlock_remains(stack):
    stack.control("POST", "/tap-policy", {"state": "disabled"})
    client, token, _ = desk_client(stack)
    answer = client.post("/helpdesk/student/alan.turing@uni.test/tap", follow_redirects=True,
                         data={"csrf_token": token, "reason": "INC-4712", "seen_grant": "0"}).get_data(as_text=True)
    assert "Temporary Access Pass policy is off" in answer and "Unlock (the bypass) is still possible." in answer
