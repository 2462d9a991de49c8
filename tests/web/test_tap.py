"""The Temporary Access Pass remedy through the portal, against the real simulator (MSAL, msgraph-sdk, Graph's shapes).

Each refusal the tenant or Graph gives is a clear sentence and falls back to the bypass where that is offered;
nothing is left behind (no pass, no grant counted); the cap counts both remedies; stopping deletes the pass.
"""
from __future__ import annotations

import re
import time
import uuid

import pytest

from app.demo import DemoStack, adfs_form_post
from app.domain.tap import Remedy
from tests.web.conftest import csrf_of

GROUP = str(uuid.uuid4())


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = DemoStack(tmp_path_factory.mktemp("tap"), worker=False, method_delay_seconds=0.0,
                      check_interval_seconds=1.0, remedy="both").start()
    yield stack
    stack.stop()


@pytest.fixture(autouse=True)
def default_policy(stack):
    """Every test starts from Entra's default policy, read afresh (the portal keeps it 5 minutes otherwise)."""
    reset = {"state": "enabled", "include_group_ids": ["all_users"], "exclude_group_ids": [], "minimum_minutes": 60,
             "maximum_minutes": 480, "default_minutes": 60}
    stack.control("POST", "/tap-policy", reset)
    stack.control("DELETE", "/faults")
    stack.services.graph._tap_policy = None  # forget the kept policy: the test changed the tenant's
    stack.services.onboarding.remedies = stack.settings.remedies
    yield


def signed_in(stack, upn: str):
    client = stack.app.test_client()
    posted = adfs_form_post(client.get("/sign-in").headers["Location"], upn, stack.seed.user(upn).password,
                            stack.settings.ca_bundle)
    page = client.post("/auth/callback", data=posted.fields, follow_redirects=True)
    return client, csrf_of(page), page.get_data(as_text=True)


def passes_of(stack, upn: str) -> list[dict]:
    users = stack.control("GET", "/users")["users"]
    return [m for u in users if u["upn"] == upn for m in u["methods"] if m == "temporaryAccessPass"]


def refused_then_bypass(stack, upn: str, expected: str) -> str:
    """Ask for a pass, expect the sentence and the fallback; take the bypass; return the refusal's code."""
    client, token, page = signed_in(stack, upn)
    assert 'id="get-tap"' in page
    answer = client.post("/tap", data={"csrf_token": token})
    text = answer.get_data(as_text=True)
    assert expected in text and "You can use the other way below instead." in text, text[:2000]
    assert 'id="tap-code"' not in text and 'id="unlock"' in text
    assert ('id="get-tap"' in text) is (expected == "Microsoft is busy right now")  # offered again if it may work
    assert passes_of(stack, upn) == [] and stack.services.store.open_grant_for(upn) is None
    refusal = stack.services.store.audit_events(upn, action="tap.refused")[0]
    assert client.post("/unlock", data={"csrf_token": token}).headers["Location"].endswith("/guide")
    grant = stack.services.store.open_grant_for(upn)
    assert grant.remedy is Remedy.BYPASS and stack.services.store.unlocks_since(upn, grant.created_at) == 1
    client.post("/cancel", data={"csrf_token": token})
    return refusal.detail["refusal"]


def test_a_disabled_policy_offers_only_the_bypass_and_a_refused_pass_falls_back(stack):
    stack.control("POST", "/tap-policy", {"state": "disabled"})
    client, token, page = signed_in(stack, "alan.turing@uni.test")
    assert 'id="get-tap"' not in page and 'id="unlock"' in page  # read, not assumed: no pass offered
    answer = client.post("/tap", data={"csrf_token": token}, follow_redirects=True).get_data(as_text=True)
    assert "does not hand out one-time passes" in answer and "the other way below" in answer


def test_graph_refusing_the_student_out_of_the_policys_scope_falls_back(stack):
    upn = "edsger.dijkstra@uni.test"
    stack.services.graph.tap_policy()  # the portal read the policy while it covered everyone ...
    stack.control("POST", "/tap-policy", {"include_group_ids": [GROUP]})  # ... then the tenant narrowed it
    code = refused_then_bypass(stack, upn, "Your account cannot get a one-time pass.")
    assert code == "tap_out_of_scope"


def test_a_student_outside_the_policys_groups_is_not_offered_a_pass(stack):
    stack.control("POST", "/tap-policy", {"include_group_ids": [GROUP]})
    client, token, page = signed_in(stack, "grace.hopper@uni.test")
    assert 'id="get-tap"' not in page and 'id="unlock"' in page
    stack.control("POST", "/entra-groups", {"upn": "grace.hopper@uni.test", "group_id": GROUP})
    try:
        assert 'id="get-tap"' in client.get("/diagnosis").get_data(as_text=True)
        stack.control("POST", "/tap-policy", {"include_group_ids": ["all_users"], "exclude_group_ids": [GROUP]})
        stack.services.graph._tap_policy = None
        assert 'id="get-tap"' not in client.get("/diagnosis").get_data(as_text=True)  # exclusions win
    finally:
        stack.control("POST", "/entra-groups", {"upn": "grace.hopper@uni.test", "group_id": GROUP, "member": False})


def test_a_lifetime_outside_the_tenants_range_falls_back(stack):
    stack.services.graph.tap_policy()  # read with a minimum of 60 minutes; the tenant then raised it
    stack.control("POST", "/tap-policy", {"minimum_minutes": 120, "default_minutes": 120})
    code = refused_then_bypass(stack, "alan.turing@uni.test", "We could not make a one-time pass just now.")
    assert code == "tap_lifetime"


def test_throttling_falls_back(stack):
    upn = "ada.lovelace@uni.test"
    user_id = stack.seed.user(upn).object_id
    stack.control("POST", "/faults", {"path": f"/v1.0/users/{user_id}/authentication/temporaryAccessPassMethods",
                                      "kind": "429", "seconds": 1, "count": 1, "method": "POST"})
    code = refused_then_bypass(stack, upn, "Microsoft is busy right now")
    assert code == "tap_throttled"
    time.sleep(1.5)  # every Graph call of the portal waits out the Retry-After: let it pass for the next test


def test_with_the_pass_alone_a_refusal_names_no_other_way(stack):
    stack.services.onboarding.remedies = (Remedy.TAP,)
    stack.control("POST", "/tap-policy", {"state": "disabled"})
    client, token, page = signed_in(stack, "grace.hopper@uni.test")
    assert 'id="get-tap"' not in page and 'id="unlock"' not in page and 'id="no-remedy"' in page
    answer = client.post("/tap", data={"csrf_token": token}, follow_redirects=True).get_data(as_text=True)
    assert "does not hand out one-time passes" in answer and "the other way below" not in answer
    refused = client.post("/unlock", data={"csrf_token": token}, follow_redirects=True).get_data(as_text=True)
    assert "This way is not offered here" in refused
    assert stack.services.store.open_grant_for("grace.hopper@uni.test") is None


def test_stopping_deletes_the_pass_and_both_remedies_count_against_the_cap(stack):
    upn = "grace.hopper@uni.test"
    client, token, _ = signed_in(stack, upn)
    for remedy in ("/tap", "/unlock", "/tap"):
        answer = client.post(remedy, data={"csrf_token": token})
        if remedy == "/tap":
            shown = answer.get_data(as_text=True)
            assert re.search(r'id="tap-code"[^>]*>[^<]{8,}<', shown)
            assert client.post("/tap", data={"csrf_token": token}).headers["Location"].endswith("/guide")
            assert len(passes_of(stack, upn)) == 1
        client.post("/cancel", data={"csrf_token": token})
        assert passes_of(stack, upn) == []  # stopping deleted it in Entra
    page = client.get("/diagnosis").get_data(as_text=True)
    assert 'id="unlock-cap"' in page and 'id="get-tap"' not in page
    capped = client.post("/tap", data={"csrf_token": token}, follow_redirects=True).get_data(as_text=True)
    assert "You have used every set-up time this week." in capped
    deleted = stack.services.store.audit_events(upn, action="grant.tap_deleted")
    assert len(deleted) == 2 and all(e.detail.get("still_there") is True for e in deleted)



def test_a_pass_graph_cannot_delete_keeps_its_grant_open_until_it_runs_out(stack):
    """Stopping must delete the pass (else the grant stays open for the worker); a pass past its end is over anyway."""
    from app.domain.actors import WORKER

    upn = "edsger.dijkstra@uni.test"
    client, token, _ = signed_in(stack, upn)
    client.post("/tap", data={"csrf_token": token})
    grant = stack.services.store.open_grant_for(upn)
    assert grant.remedy is Remedy.TAP and len(passes_of(stack, upn)) == 1
    user_id = stack.seed.user(upn).object_id
    stack.control("POST", "/faults", {"path": f"/v1.0/users/{user_id}/authentication/temporaryAccessPassMethods",
                                      "kind": "503", "method": "DELETE"})
    assert client.post("/cancel", data={"csrf_token": token}).status_code == 503
    assert stack.services.store.open_grant_for(upn).id == grant.id  # still open: the worker tries again
    ended = stack.services.grants.close_grant(grant.id, outcome="expired", actor=WORKER, reason="grant time ended")
    assert ended.state.value == "expired"  # Entra ends a pass at its lifetime by itself
    failures = stack.services.store.audit_events(upn, action="grant.tap_deleted")
    assert [e.outcome for e in failures[:2]] == ["error", "error"]
    stack.control("DELETE", "/faults")
