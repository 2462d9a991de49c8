"""Lagging DCs, an unreachable LDAP server, and the headers every page carries."""
from __future__ import annotations

import pytest

from app import create_app
from app.adapters.budget import UnlimitedBudget
from app.adapters.directory import LdapDirectory
from app.adapters.budget import UnlimitedBudget
from app.adapters.store import Store
from app.domain.directory import MembershipCheck
from app.domain.evidence import GraphThrottled
from app.web.errors import busy_retry_seconds
from app.wiring import build_grants, build_services
from tests.web.conftest import SEED, csrf_of, sign_in
from tests.web.fakes import FakeIdentity

HALF = "ada.lovelace@uni.test"


class LaggingDirectory:
    """The embedded directory, but the second DC learns of a change only after `lag_checks` confirmations."""

    def __init__(self, inner, lag_checks: int):
        self.inner = inner
        self.lag_checks = lag_checks

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def confirm_membership(self, group_dn, member_dn, present=True, timeout_seconds=20.0):
        if self.lag_checks > 0:
            self.lag_checks -= 1
            return MembershipCheck(agreeing=("dc1",), lagging=("dc2",))
        return MembershipCheck(agreeing=("dc1", "dc2"), lagging=())


def portal(settings, directory, graph, clock):
    store = Store(settings.database_url)
    store.upgrade()
    services = build_services(settings, directory=directory, graph=graph, identity=FakeIdentity(), store=store,
                              grants=build_grants(settings, store, directory, clock), budget=UnlimitedBudget(),
                              clock=clock)
    return create_app(settings, services=services).test_client()


def test_lagging_dcs_get_an_honest_wait_then_the_normal_status(settings, directory, graph, clock):
    client = portal(settings, LaggingDirectory(directory, lag_checks=2), graph, clock)
    page = sign_in(client, HALF)
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    guide = client.get("/guide").get_data(as_text=True)
    assert 'data-phase="propagating"' in guide and "This can take a minute" in guide
    before = graph.requests
    assert client.get("/status").get_json()["phase"] == "waiting"  # rechecked the DCs: now all agree
    assert graph.requests == before  # a lagging DC is rechecked instead of asking Graph


def test_an_unreachable_ldap_server_gives_the_directory_page(settings, graph, clock):
    nowhere = LdapDirectory(["ldaps://127.0.0.1:1"], "CN=svc,DC=uni,DC=test", "x", SEED.base_dn, timeout=2.0)
    client = portal(settings, nowhere, graph, clock)
    page = sign_in(client, HALF)
    assert page.status_code == 503
    assert "account system is not answering" in page.get_data(as_text=True)
    assert graph.requests == 0


def test_personal_pages_are_never_cached(client):
    page = sign_in(client, HALF)
    assert page.headers["Cache-Control"] == "no-store"
    assert client.get("/status").headers["Cache-Control"] == "no-store"
    assert "no-store" not in client.get("/static/shared/portal.css").headers.get("Cache-Control", "")


SECURITY_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy",
                    "Permissions-Policy", "X-Request-ID")


def test_every_answer_carries_each_security_header_exactly_once(client):
    """Pages, the poll, errors, a view's own Cache-Control and static files: each header once, ours winning."""
    sign_in(client, HALF)
    answers = {path: client.get(path) for path in ("/diagnosis", "/status", "/no-such-page", "/readyz",
                                                   "/static/shared/portal.css")}
    for path, answer in answers.items():
        for name in SECURITY_HEADERS:
            assert len(answer.headers.getlist(name)) == 1, (path, name)
        assert answer.headers["X-Frame-Options"] == "DENY" and "default-src 'none'" in answer.headers[
            "Content-Security-Policy"]
    for path in ("/diagnosis", "/status", "/no-such-page", "/readyz"):
        assert answers[path].headers.getlist("Cache-Control") == ["no-store"], path
    assert answers["/status"].headers["X-Request-ID"] != answers["/diagnosis"].headers["X-Request-ID"]


@pytest.mark.parametrize("path", ["/", "/diagnosis", "/guide"])
def test_pages_carry_no_inline_script_or_style(client, path):
    sign_in(client, HALF)
    html = client.get(path, follow_redirects=True).get_data(as_text=True)
    assert "<script>" not in html and "style=" not in html and "<style" not in html
    assert "onload=" not in html and "onclick=" not in html


def test_times_are_shown_in_the_configured_time_zone(tmp_path, directory, graph, clock):
    from zoneinfo import ZoneInfo

    from babel.dates import format_time

    from tests.web.conftest import demo_settings

    settings = demo_settings(tmp_path, timezone="Asia/Kolkata")
    client = portal(settings, directory, graph, clock)
    page = sign_in(client, HALF)
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    expires_at = client.application.extensions["proofup"].store.open_grant_for(HALF).expires_at
    html = client.get("/guide").get_data(as_text=True)
    assert format_time(expires_at, "short", locale="en", tzinfo=ZoneInfo("Asia/Kolkata")) in html
    assert format_time(expires_at, "short", locale="en", tzinfo=ZoneInfo("UTC")) not in html


def test_an_unlock_while_microsoft_is_busy_comes_back_as_the_diagnosis(client, graph, clock, directory):
    """The busy page of a POST retries the diagnosis (a GET), never the unlock itself."""
    page = sign_in(client, HALF)
    clock.advance(60)  # the diagnosis' evidence is no longer fresh enough for the unlock to reuse
    graph.throttled = GraphThrottled("Graph answered 429 for the request", 429, "TooManyRequests", 42.5)
    busy = client.post("/unlock", data={"csrf_token": csrf_of(page)})
    assert busy.status_code == 503 and "Microsoft is busy right now" in busy.get_data(as_text=True)
    assert busy.headers["Retry-After"] == "43" and busy.headers["Refresh"] == "43; url=/diagnosis"
    assert directory.list_members(SEED.bypass_group_dn) == []


@pytest.mark.parametrize(("retry_after", "seconds"), [(None, 10), (0.2, 5), (7.01, 8), (3600, 60)])
def test_the_busy_page_retries_within_bounds(retry_after, seconds):
    assert busy_retry_seconds(retry_after) == seconds


@pytest.mark.parametrize(("form", "content_type"), [
    ({"state": "x", "pad": "a" * (65 * 1024)}, "application/x-www-form-urlencoded"),  # the body over 64 KiB
    ({"state": "x", "code": "a" * (17 * 1024)}, "multipart/form-data"),  # one field over 16 KiB
    ({f"field{i}": "x" for i in range(60)}, "multipart/form-data"),  # more than 50 parts
], ids=["body", "field", "fields"])
def test_requests_over_the_limits_get_413_and_change_nothing(client, directory, form, content_type):
    refused = client.post("/auth/callback", data=form, content_type=content_type)
    assert refused.status_code == 413 and "more data than this portal accepts" in refused.get_data(as_text=True)
    assert directory.list_members(SEED.bypass_group_dn) == []
