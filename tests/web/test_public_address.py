"""PROOFUP_PUBLIC_URL: absolute URLs come from it, other hosts are refused, foreign origins cannot POST."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from tests.web.conftest import csrf_of, demo_settings, sign_in
from tests.web.test_faults_and_headers import portal

HALF = "ada.lovelace@uni.test"
PUBLIC = "https://portal.uni.example"


@pytest.fixture
def public_portal(tmp_path, directory, graph, clock):
    """The portal at https://portal.uni.example behind one proxy; the test client speaks to it as that host."""
    return portal(demo_settings(tmp_path, public_url=PUBLIC, proxy_hops=1), directory, graph, clock)


def test_redirect_and_logout_uris_come_from_the_public_url(tmp_path, directory, graph, clock):
    client = portal(demo_settings(tmp_path, public_url=PUBLIC + "/proofup/", proxy_hops=1), directory, graph, clock)
    identity = client.application.extensions["proofup"].identity
    forwarded = {"X-Forwarded-Proto": "http", "X-Forwarded-Host": "portal.uni.example"}
    client.get("/sign-in", headers=forwarded)
    assert identity.last_redirect_uri == PUBLIC + "/proofup/auth/callback"
    sign_in(client, HALF)
    out = client.post("/sign-out", data={"csrf_token": csrf_of(client.get("/diagnosis"))}, headers=forwarded)
    assert parse_qs(urlparse(out.headers["Location"]).query)["post_logout_redirect_uri"] == [PUBLIC + "/proofup/"]


@pytest.mark.parametrize("headers", [
    {"Host": "evil.example"},
    {"Host": "portal.uni.example.evil.example"},
    {"Host": "portal.uni.example:8443"},
    {"X-Forwarded-Host": "evil.example"},  # one trusted proxy: its forwarded host is the one checked
    {"Host": "portal uni.example"},  # characters no host has
])
def test_another_host_is_refused_before_anything_runs(public_portal, headers):
    identity = public_portal.application.extensions["proofup"].identity
    answer = public_portal.get("/sign-in", headers=headers)
    assert answer.status_code == 400
    assert "not reachable under this address" in answer.get_data(as_text=True)
    assert PUBLIC in answer.get_data(as_text=True)
    assert identity.last_redirect_uri == ""  # no sign-in was started, no redirect URI built


def test_a_state_change_for_another_host_changes_nothing(public_portal):
    page = sign_in(public_portal, HALF)
    refused = public_portal.post("/unlock", data={"csrf_token": csrf_of(page)}, headers={"Host": "evil.example"})
    assert refused.status_code == 400
    assert public_portal.application.extensions["proofup"].store.open_grant_for(HALF) is None


def test_probes_answer_on_any_host(public_portal):
    assert public_portal.get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://portal.uni.example"},  # the right host over the wrong scheme is another origin
    {"Referer": "https://evil.example/page"},
    {"Origin": "https://evil.example", "Referer": PUBLIC + "/diagnosis"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site", "Origin": PUBLIC},  # another host of the university is another origin
])
def test_a_post_from_another_origin_is_refused_and_audited(public_portal, headers):
    page = sign_in(public_portal, HALF)
    refused = public_portal.post("/unlock", data={"csrf_token": csrf_of(page)}, headers=headers)
    assert refused.status_code == 403
    assert "did not come from the portal" in refused.get_data(as_text=True)
    store = public_portal.application.extensions["proofup"].store
    assert store.open_grant_for(HALF) is None
    event = store.audit_events(action="request.refused", limit=1)[0]
    assert (event.actor, event.upn, event.detail["endpoint"]) == (HALF, HALF, "student.unlock")


@pytest.mark.parametrize("headers", [
    {"Origin": PUBLIC}, {"Origin": PUBLIC + ":443"}, {"Referer": PUBLIC + "/diagnosis"}, {},
    {"Sec-Fetch-Site": "same-origin", "Origin": PUBLIC},
])
def test_a_post_from_the_portal_itself_works(public_portal, headers):
    page = sign_in(public_portal, HALF)
    done = public_portal.post("/unlock", data={"csrf_token": csrf_of(page)}, headers=headers)
    assert done.status_code == 302 and done.headers["Location"].endswith("/guide")


def test_the_authority_callback_is_the_one_cross_site_post(public_portal):
    answer = public_portal.post("/auth/callback", data={"state": "x", "code": "y"},
                                headers={"Origin": "https://adfs.uni.example"})
    assert answer.status_code == 303


def test_https_public_url_gets_hsts_and_secure_cookies(public_portal):
    start = public_portal.get("/sign-in")
    assert "max-age=" in start.headers["Strict-Transport-Security"]
    assert "Secure" in start.headers["Set-Cookie"] and "proofup_signin=" in start.headers["Set-Cookie"]
    page = sign_in(public_portal, HALF)
    cookie = public_portal.get_cookie("proofup_session", domain="portal.uni.example")
    assert cookie.secure and cookie.http_only and page.status_code == 200
    assert start.headers["Referrer-Policy"] == "same-origin"  # our own POSTs keep their Origin header


def test_the_loopback_demo_gets_no_hsts(client):
    answer = client.get("/")
    assert "Strict-Transport-Security" not in answer.headers
    sign_in(client, HALF)
    assert not client.get_cookie("proofup_session").secure
