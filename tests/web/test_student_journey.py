"""The student's pages in the Flask test client: sign-in, diagnosis, unlock, guide, status, cancel."""
from __future__ import annotations

import re

import pytest

from app.domain.directory import DirectoryUnavailable
from app.domain.evidence import GraphThrottled, GraphUnavailable
from app.web import SESSION_COOKIE
from tests.web.conftest import SEED, copy_of, csrf_of, session_token, sign_in
from tests.web.fakes import fake_code, state_of

HALF = "ada.lovelace@uni.test"


def text_of(response) -> str:
    return response.get_data(as_text=True)


def test_start_page_offers_sign_in_and_sends_strict_headers(client):
    page = client.get("/")
    assert page.status_code == 200
    assert 'href="/sign-in"' in text_of(page)
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert "frame-ancestors 'none'" in csp
    assert page.headers["Cache-Control"] == "no-store"


def test_sign_in_keeps_the_flow_server_side_and_renews_the_session(client, services):
    start = client.get("/sign-in")
    assert start.headers["Location"].startswith("https://idp.test/adfs/oauth2/authorize")
    assert "proofup_session" not in start.headers.get("Set-Cookie", "")  # nothing in the cookie to lose
    with client.session_transaction() as s:
        s["leftover"] = "from the previous visitor"
    page = sign_in(client, HALF)
    assert page.status_code == 200 and "Ada" in text_of(page)
    with client.session_transaction() as s:
        assert "leftover" not in s and "upn" not in s and "name" not in s  # identity lives on the server only
    assert services.sessions.resolve(session_token(client)).upn == HALF
    assert services.store.audit_events(HALF, action="sign_in")


def test_callback_with_an_unknown_or_reused_state_changes_nothing(client):
    page = client.post("/auth/callback", data={"state": "forged", "code": fake_code(HALF)}, follow_redirects=True)
    assert page.status_code == 400
    assert "sign in again" in text_of(page)
    assert session_token(client) is None


def test_callback_refused_by_the_identity_adapter_shows_its_message(client):
    from tests.web.fakes import state_of

    state = state_of(client.get("/sign-in").headers["Location"])
    page = client.post("/auth/callback", data={"state": state, "code": "bad"}, follow_redirects=True)
    assert page.status_code == 400
    assert session_token(client) is None


@pytest.mark.parametrize(
    ("upn", "state", "reason", "unlock_button"),
    [
        ("ada.lovelace@uni.test", "stuck", "half_registered", True),
        ("grace.hopper@uni.test", "stuck", "unregistered", True),
        ("edsger.dijkstra@uni.test", "stuck", "half_registered", True),
        ("barbara.liskov@uni.test", "registered", "has_strong_method", False),
        ("margaret.hamilton@uni.test", "not_required", "not_in_required_group", False),
        ("ken.thompson@uni.test", "ineligible", "privileged", False),
        ("dennis.ritchie@uni.test", "ineligible", "disabled", False),
        ("radia.perlman@uni.test", "ineligible", "missing_in_entra", False),
        ("nobody@uni.test", "ineligible", "missing_in_ad", False),
    ],
)
def test_diagnosis_explains_every_seeded_state(client, upn, state, reason, unlock_button):
    page = sign_in(client, upn)
    html = text_of(page)
    assert f'data-state="{state}"' in html and f'data-reason="{reason}"' in html
    assert ('id="unlock"' in html) is unlock_button


def test_diagnosis_shows_the_evidence(client):
    html = text_of(sign_in(client, HALF))
    assert "Pixel 7" in html  # the registered device
    assert re.search(r'id="sign-ins"[^>]*>\s*<li>', html)  # Authenticator sign-ins listed with dates
    assert "None yet (only the password)" in html
    assert re.search(r'<details class="desk-details"', html)  # folded away: the evidence is for the desk
    html = text_of(sign_in(client, "edsger.dijkstra@uni.test"))
    assert "Yes, through a course or cohort" in html


def test_diagnosis_costs_one_graph_call(client, graph):
    sign_in(client, HALF)
    assert graph.requests == 1


def test_unlock_twice_gives_one_grant_and_one_membership(client, services, directory):
    page = sign_in(client, HALF)
    token = csrf_of(page)
    first = client.post("/unlock", data={"csrf_token": token})
    second = client.post("/unlock", data={"csrf_token": token})
    assert first.headers["Location"].endswith("/guide") and second.headers["Location"].endswith("/guide")
    grants = services.store.grants_for(HALF)
    assert len(grants) == 1 and grants[0].state == "active"
    user = directory.find_user(HALF)
    assert directory.is_member(SEED.bypass_group_dn, user.dn)


def test_unlock_without_csrf_is_refused_with_a_clear_page(client, services):
    sign_in(client, HALF)
    page = client.post("/unlock")
    assert page.status_code == 400
    assert "This page has expired" in text_of(page)
    assert services.store.grants_for(HALF) == []


@pytest.mark.parametrize("upn", ["ken.thompson@uni.test", "barbara.liskov@uni.test", "dennis.ritchie@uni.test"])
def test_unlock_is_refused_by_policy(client, services, directory, upn):
    page = sign_in(client, upn)
    refused = client.post("/unlock", data={"csrf_token": csrf_of(page)}, follow_redirects=True)
    assert refused.status_code == 200 and 'class="notice notice-error"' in text_of(refused)
    assert services.store.grants_for(upn) == []
    assert directory.list_members(SEED.bypass_group_dn) == []


def test_guide_links_to_my_sign_ins_with_tenant_and_language(client):
    page = sign_in(client, HALF)
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    html = text_of(client.get("/guide", headers={"Accept-Language": "en"}))
    assert (f"https://mysignins.test/security-info?tenant={SEED.tenant_id}&amp;lng=en"
            f"&amp;login_hint={HALF.replace('@', '%40')}") in html
    assert "Microsoft may ask for your address again" in html
    assert 'src="/static/student/pages.js"' in html and "<script>" not in html


def test_polls_never_ask_graph_the_worker_checks_once_per_interval(client, graph, clock, services, worker_pass):
    page = sign_in(client, HALF)
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    interval = services.settings.check_interval_seconds
    before = graph.requests
    for _ in range(10):  # three tabs polling for minutes: every answer comes from the database
        assert client.get("/status").get_json()["phase"] == "waiting"
        clock.advance(interval)
    assert graph.requests == before
    worker_pass()
    assert graph.requests == before + 1
    worker_pass()  # checked a moment ago: not due again
    assert graph.requests == before + 1
    clock.advance(interval)
    worker_pass()
    assert graph.requests == before + 2
    assert client.get("/status").get_json()["phase"] == "waiting"


def test_unlock_reuses_the_evidence_the_diagnosis_just_gathered(client, graph):
    page = sign_in(client, HALF)
    before = graph.requests
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    assert graph.requests == before


def test_i_have_finished_asks_the_worker_to_check_at_its_next_pass(client, graph, clock, services, worker_pass):
    page = sign_in(client, HALF)
    token = csrf_of(page)
    client.post("/unlock", data={"csrf_token": token})
    worker_pass()
    clock.advance(1)
    before = graph.requests
    worker_pass()
    assert graph.requests == before  # not due yet
    answer = client.post("/status/check", headers={"X-CSRFToken": token})
    assert answer.get_json()["phase"] == "waiting" and graph.requests == before  # the button asks no Graph either
    assert services.store.open_grant_for(HALF).check_wanted_at is not None
    worker_pass()
    assert graph.requests == before + 1
    assert services.store.open_grant_for(HALF).check_wanted_at is None  # done: the next pass waits its turn
    worker_pass()
    assert graph.requests == before + 1


def test_new_strong_method_closes_the_grant_and_says_done(client, graph, services, directory, worker_pass):
    page = sign_in(client, HALF)
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    assert client.get("/status").get_json()["phase"] == "waiting"
    graph.register(HALF)
    assert client.get("/status").get_json()["phase"] == "waiting"  # until the worker's next pass
    worker_pass()
    status = client.get("/status").get_json()
    assert status["phase"] == "done"
    assert directory.list_members(SEED.bypass_group_dn) == []
    assert services.store.grants_for(HALF)[0].state == "released" and services.store.grants_for(HALF)[0].method_seen_at
    html = text_of(client.get("/diagnosis"))
    assert 'data-state="completed"' in html


def test_cancel_locks_again_and_a_stale_tab_gets_a_clear_answer(client, services, directory):
    page = sign_in(client, HALF)
    token = csrf_of(page)
    client.post("/unlock", data={"csrf_token": token})
    cancelled = client.post("/cancel", data={"csrf_token": token}, follow_redirects=True)
    assert "Stopped" in text_of(cancelled)
    assert directory.list_members(SEED.bypass_group_dn) == []
    assert client.get("/status").get_json()["phase"] == "cancelled"
    stale = client.post("/cancel", data={"csrf_token": token}, follow_redirects=True)
    assert "nothing to stop" in text_of(stale)
    assert client.get("/guide").headers["Location"].endswith("/diagnosis")
    assert 'id="unlock"' in text_of(client.get("/diagnosis"))  # may unlock again


def test_pages_need_a_sign_in(client):
    for path in ("/diagnosis", "/guide", "/leave"):
        assert client.get(path).headers["Location"].endswith("/")
    # The guide's poller gets a 401 and reloads the page, which then says why (not a redirect it would follow).
    assert client.get("/status").status_code == 401


def test_sign_out_clears_the_session_and_ends_the_authority_session(client):
    page = sign_in(client, HALF)
    out = client.post("/sign-out", data={"csrf_token": csrf_of(page)})
    assert out.headers["Location"].startswith("https://idp.test/adfs/oauth2/logout")
    assert session_token(client) is None
    assert client.get("/diagnosis").headers["Location"].endswith("/")


def test_graph_down_gives_a_service_unavailable_page(client, graph):
    graph.down = True
    page = sign_in(client, HALF)
    assert page.status_code == 503
    assert "Microsoft" in text_of(page) and "nothing was changed" in text_of(page)


def test_directory_down_gives_a_service_unavailable_page(client, directory, monkeypatch):
    def down(*_args, **_kwargs):
        raise DirectoryUnavailable("no DC answered")

    monkeypatch.setattr(directory, "find_user", down)
    page = sign_in(client, HALF)
    assert page.status_code == 503
    assert "account system is not answering" in text_of(page)


def test_health_and_readiness(client, directory, monkeypatch):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    monkeypatch.setattr(directory, "find_user", lambda _upn: (_ for _ in ()).throw(DirectoryUnavailable("x")))
    ready = client.get("/readyz")  # the directory is not this instance's readiness (tests/web/test_readiness.py)
    assert ready.status_code == 200 and "directory" not in ready.get_json()["checks"]


def test_unknown_page_is_a_friendly_404(client):
    page = client.get("/nope")
    assert page.status_code == 404 and "start page" in text_of(page)


@pytest.mark.parametrize(("error", "note"), [(GraphThrottled("budget", 429, "budget"), "budget"),
                                             (GraphUnavailable("down", 503), "graph_unavailable")])
def test_a_refused_check_says_still_checking_and_keeps_the_grant(client, graph, services, monkeypatch, worker_pass,
                                                                  error, note):
    page = sign_in(client, HALF)
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    monkeypatch.setattr(graph, "methods_for", lambda ids: {i: error for i in ids})
    worker_pass()
    status = client.get("/status").get_json()
    assert (status["phase"], status["note"]) == ("waiting", note)
    assert "Still checking" in status["text"]
    assert services.store.open_grant_for(HALF).last_checked_at is None  # still due: the next pass tries again
    monkeypatch.undo()
    worker_pass()
    assert client.get("/status").get_json()["note"] == ""


def test_pages_follow_the_browser_language(client):
    page = sign_in(client, HALF)
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    german = text_of(client.get("/guide", headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}))
    assert '<html lang="de">' in german and "Die Microsoft Authenticator-App einrichten" in german
    assert "&amp;lng=de" in german  # My Sign-Ins opens in the same language
    english = text_of(client.get("/guide", headers={"Accept-Language": "fr"}))
    assert '<html lang="en">' in english and "Set up the Microsoft Authenticator app" in english


def test_two_simultaneous_unlock_clicks_make_one_grant(app, client, services, directory):
    import threading

    page = sign_in(client, HALF)
    token = csrf_of(page)
    answers: list[int] = []
    start = threading.Barrier(4)

    def click() -> None:
        tab = copy_of(app, client)
        start.wait()
        answers.append(tab.post("/unlock", data={"csrf_token": token}).status_code)

    threads = [threading.Thread(target=click) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [302] * 4
    assert len(services.store.grants_for(HALF)) == 1
    assert directory.list_members(SEED.bypass_group_dn) == [directory.find_user(HALF).dn]


def test_sign_in_events_reach_the_audit_feed_and_any_other_subscriber(client, services):
    heard = []
    services.events.sign_in_succeeded.connect(lambda _s, event: heard.append(("ok", event)), weak=False)
    services.events.sign_in_failed.connect(lambda _s, event: heard.append(("failed", event)), weak=False)
    sign_in(client, HALF)
    client.delete_cookie(SESSION_COOKIE)
    state = state_of(client.get("/sign-in").headers["Location"])
    assert client.post("/auth/callback", data={"state": state, "code": "forged"},
                       follow_redirects=True).status_code == 400
    assert [(kind, e.actor.kind.value, e.upn, e.code) for kind, e in heard] == [
        ("ok", "student", HALF, ""), ("failed", "visitor", None, "invalid_token")]
    signed_in = services.store.audit_events(HALF, action="sign_in")[0]
    assert (signed_in.actor_kind, signed_in.actor) == ("student", HALF)
    refused = services.store.audit_events(action="sign_in.refused")[0]
    assert (refused.actor_kind, refused.outcome, refused.detail["refusal"]) == ("visitor", "refused", "invalid_token")
