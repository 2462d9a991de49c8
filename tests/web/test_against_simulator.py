"""The portal with its real adapters (MSAL, msgraph-sdk) against the in-process simulator and the embedded directory."""
from __future__ import annotations

import time

import pytest

from app.demo import DemoStack, adfs_form_post
from app.domain.ports import DIRECTORY
from tests.web.conftest import csrf_of

HALF = "ada.lovelace@uni.test"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    stack = DemoStack(tmp_path_factory.mktemp("sim"), worker=False, method_delay_seconds=0.0,
                      check_interval_seconds=1.0).start()
    yield stack
    stack.stop()


@pytest.fixture
def client(stack):
    stack.control("DELETE", "/faults")
    app = stack.app
    return app.test_client()


def sign_in(stack, client, upn: str):
    """Sign in through the simulated AD FS: the authorize page, the forms login, the form_post back."""
    auth_uri = client.get("/sign-in").headers["Location"]
    posted = adfs_form_post(auth_uri, upn, stack.seed.user(upn).password, stack.settings.ca_bundle)
    assert posted.action.endswith("/auth/callback")
    return client.post("/auth/callback", data=posted.fields, follow_redirects=True)


def test_real_sign_in_and_one_batch_diagnosis(stack, client):
    before = len(stack.graph_requests())
    page = sign_in(stack, client, HALF)
    assert page.status_code == 200
    assert 'data-reason="half_registered"' in page.get_data(as_text=True)
    graph = stack.graph_requests()[before:]
    assert [r["path"] for r in graph] == ["/v1.0/$batch"]  # the evidence in ONE round trip


def test_wrong_password_never_reaches_the_portal(stack, client):
    auth_uri = client.get("/sign-in").headers["Location"]
    posted = adfs_form_post(auth_uri, HALF, "wrong", stack.settings.ca_bundle)
    assert not posted.action.endswith("/auth/callback")


def test_a_replayed_callback_is_refused(stack, client):
    auth_uri = client.get("/sign-in").headers["Location"]
    posted = adfs_form_post(auth_uri, HALF, stack.seed.user(HALF).password, stack.settings.ca_bundle)
    assert client.post("/auth/callback", data=posted.fields, follow_redirects=True).status_code == 200
    replay = stack.app.test_client().post("/auth/callback", data=posted.fields, follow_redirects=True)
    assert replay.status_code == 400


def test_missing_in_entra_is_explained(stack, client):
    html = sign_in(stack, client, "radia.perlman@uni.test").get_data(as_text=True)
    assert 'data-reason="missing_in_entra"' in html


def test_graph_down_gives_a_clear_page_and_no_grant(stack, client):
    stack.control("POST", "/faults", {"path": "/v1.0", "kind": "503"})
    page = sign_in(stack, client, "alan.turing@uni.test")
    assert page.status_code == 503
    assert "could not reach Microsoft 365" in page.get_data(as_text=True)
    assert stack.services.store.grants_for("alan.turing@uni.test") == []


def confirm_pass(stack):
    """Run one of the worker's confirmation passes (the stack runs no worker thread here)."""
    from app.wiring import build_worker

    return build_worker(stack.services)[0].run_confirm_pass()


def test_polls_ask_no_graph_and_the_worker_confirms_and_releases(stack, client):
    upn = "grace.hopper@uni.test"
    page = sign_in(stack, client, upn)
    assert client.post("/unlock", data={"csrf_token": csrf_of(page)}).status_code == 302
    user = stack.directory.find_user(upn)
    assert stack.directory.is_member(stack.seed.bypass_group_dn, user.dn)
    stack.control("POST", "/membership", {"group": "bypass", "upn": upn, "member": True})  # idempotent
    stack.register_method(upn, "phone")
    before = len(stack.graph_requests())
    for _ in range(4):  # polls across more than two check intervals (1 s here), and "I have finished"
        assert client.get("/status").get_json()["phase"] == "waiting"
        time.sleep(0.6)
    assert client.post("/status/check", headers={"X-CSRFToken": csrf_of(page)}).get_json()["phase"] == "waiting"
    assert stack.graph_requests()[before:] == []  # no poll asked Graph, however due the grant was
    report = confirm_pass(stack)
    assert (report.checked, report.released) == (1, 1)
    assert [r["path"] for r in stack.graph_requests()[before:]] == ["/v1.0/$batch"]
    assert client.get("/status").get_json()["phase"] == "done"
    assert not stack.directory.is_member(stack.seed.bypass_group_dn, user.dn)


def test_graph_down_at_the_check_says_still_checking_until_a_pass_gets_through(stack, client):
    upn = HALF
    page = sign_in(stack, client, upn)
    assert client.post("/unlock", data={"csrf_token": csrf_of(page)}).status_code == 302
    stack.register_method(upn, "phone")
    stack.control("POST", "/faults", {"path": "/v1.0/$batch", "kind": "503"})
    assert confirm_pass(stack).released == 0
    status = client.get("/status").get_json()
    assert (status["phase"], status["note"]) == ("waiting", "graph_unavailable")
    assert stack.services.store.open_grant_for(upn) is not None  # nothing lost: still open and due
    stack.control("DELETE", "/faults")
    assert confirm_pass(stack).released == 1
    assert client.get("/status").get_json()["phase"] == "done"


def test_a_short_retry_after_is_waited_out_on_the_page(stack, client):
    sign_in(stack, client, "alan.turing@uni.test")
    stack.control("POST", "/faults", {"path": "/v1.0/$batch", "kind": "429", "seconds": 1.5, "count": 1})
    started = time.monotonic()
    page = client.get("/diagnosis")
    assert page.status_code == 200 and 'data-reason="half_registered"' in page.get_data(as_text=True)
    assert time.monotonic() - started >= 1.5


def test_a_long_retry_after_gives_a_busy_page_that_retries_by_itself(stack, client):
    """Longer than a person should stare at a loading page: say Microsoft is busy, and come back by itself."""
    sign_in(stack, client, "alan.turing@uni.test")
    stack.control("POST", "/faults", {"path": "/v1.0/$batch", "kind": "429", "seconds": 20.25})
    try:
        started = time.monotonic()
        page = client.get("/diagnosis")
    finally:
        stack.control("DELETE", "/faults")
        with stack.services.store.locked_budget(DIRECTORY) as budget:
            budget.blocked_until = 0.0  # the 429 blocked the shared budget for every later test of this module
    assert time.monotonic() - started < 10
    html = page.get_data(as_text=True)
    assert page.status_code == 503 and "Microsoft is busy right now" in html
    assert "tries again by itself in 21 seconds" in html
    assert page.headers["Retry-After"] == "21" and page.headers["Refresh"] == "21; url=/diagnosis"
    assert stack.services.store.grants_for("alan.turing@uni.test") == []


def test_an_unknown_method_type_counts_as_a_method(stack, client):
    """A method type Graph adds after this portal was written: shown as an unknown method, never unlocked."""
    upn = "edsger.dijkstra@uni.test"  # half-registered
    stack.register_method(upn, "futureMethod")
    page = sign_in(stack, client, upn)
    html = page.get_data(as_text=True)
    assert 'data-reason="has_strong_method"' in html and "Unknown method: Something new" in html
    refused = client.post("/unlock", data={"csrf_token": csrf_of(page)})
    assert refused.status_code == 302 and refused.headers["Location"].endswith("/diagnosis")
    assert stack.services.store.grants_for(upn) == []
    assert not stack.directory.is_member(stack.seed.bypass_group_dn, stack.directory.find_user(upn).dn)
