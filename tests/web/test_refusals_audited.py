"""Refusals leave a trace: refused unlocks, CSRF failures, unknown or replayed sign-in answers, failed
token checks and CLI refusals each write an audit event with actor, reason and client address, no secret."""
from __future__ import annotations

import json

import pytest

from app import cli
from tests.web.conftest import csrf_of, sign_in
from tests.web.fakes import fake_code, state_of

HALF = "ada.lovelace@uni.test"
ADMIN = "ken.thompson@uni.test"  # adminCount=1 in the seed


def refusals(services, action):
    return [e for e in services.store.audit_events(action=action) if e.outcome == "refused"]


def test_a_privileged_account_trying_to_unlock_is_a_warning(client, services):
    page = sign_in(client, ADMIN)
    client.post("/unlock", data={"csrf_token": csrf_of(page)}, environ_base={"REMOTE_ADDR": "198.51.100.23"})
    [event] = refusals(services, "unlock.refused")
    assert (event.actor, event.upn, event.detail["refusal"]) == (ADMIN, ADMIN, "privileged")
    assert event.severity == "warning" and event.detail["client"] == "198.51.100.23"


@pytest.mark.parametrize(("upn", "refusal"), [("barbara.liskov@uni.test", "has_strong_method"),
                                              ("dennis.ritchie@uni.test", "disabled")])
def test_other_refused_unlocks_are_recorded_as_information(client, services, upn, refusal):
    page = sign_in(client, upn)
    client.post("/unlock", data={"csrf_token": csrf_of(page)})
    [event] = refusals(services, "unlock.refused")
    assert (event.detail["refusal"], event.severity) == (refusal, "info")


def test_a_csrf_failure_names_the_signed_in_student_or_an_anonymous_visitor(client, services):
    sign_in(client, HALF)
    client.post("/unlock", data={"csrf_token": "forged"})
    event = refusals(services, "csrf.refused")[0]
    assert (event.actor, event.upn, event.detail["path"]) == (HALF, HALF, "/unlock")
    client.delete_cookie("proofup_sid")
    client.post("/sign-out")
    event = refusals(services, "csrf.refused")[0]
    assert (event.actor_kind, event.actor, event.upn, event.detail["path"]) == ("visitor", "127.0.0.1", None,
                                                                                 "/sign-out")
    assert services.store.grants_for(HALF) == []


def test_an_unknown_or_replayed_sign_in_answer_is_recorded_without_the_code(client, services):
    client.post("/auth/callback", data={"state": "forged", "code": "ok.SECRET-CODE-1"})
    state = state_of(client.get("/sign-in").headers["Location"])
    signed_in = client.post("/auth/callback", data={"state": state, "code": fake_code(HALF)}, follow_redirects=True)
    assert signed_in.status_code == 200
    client.delete_cookie("proofup_sid")
    replay = client.post("/auth/callback", data={"state": state, "code": "ok.SECRET-CODE-2"}, follow_redirects=True)
    assert replay.status_code == 400
    events = refusals(services, "sign_in.refused")
    assert [e.detail["refusal"] for e in events] == ["unknown_or_used_state"] * 2
    assert all(e.actor_kind == "visitor" and e.detail["client"] == "127.0.0.1" for e in events)
    assert "SECRET-CODE" not in json.dumps([e.detail for e in services.store.audit_events()])


def test_a_failed_token_check_is_recorded(client, services):
    state = state_of(client.get("/sign-in").headers["Location"])
    client.post("/auth/callback", data={"state": state, "code": "bad"}, follow_redirects=True)
    [event] = refusals(services, "sign_in.refused")
    assert event.detail["refusal"] == "invalid_token"


def test_cli_refusals_are_recorded_with_the_admin(services, settings, monkeypatch):
    services.close = lambda: None
    monkeypatch.setattr(cli, "_services", lambda _settings: services)
    monkeypatch.setattr(cli, "load_settings", lambda: settings)
    assert cli.main(["grant", ADMIN, "--minutes", "15", "--reason", "please"]) == cli.REFUSED
    assert cli.main(["release", HALF, "--reason", "nothing open"]) == cli.REFUSED
    [grant] = refusals(services, "unlock.refused")
    [release] = refusals(services, "cancel.refused")
    assert grant.actor_kind == "cli" and grant.severity == "warning" and grant.detail["client"] == "cli"
    assert release.actor_kind == "cli" and release.detail["refusal"] == "no_open_grant"


def test_a_flood_of_refusals_from_one_address_cannot_fill_the_trail(client, services):
    import time

    from app.web import REFUSALS_PER_MINUTE

    while time.monotonic() % 60 > 45:  # the counter starts afresh each monotonic minute: keep the burst in one
        time.sleep(0.5)
    for _ in range(REFUSALS_PER_MINUTE + 20):
        client.post("/sign-out", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert len(refusals(services, "csrf.refused")) <= REFUSALS_PER_MINUTE
    client.post("/sign-out", environ_base={"REMOTE_ADDR": "203.0.113.10"})  # another address still counts
    assert refusals(services, "csrf.refused")[0].detail["client"] == "203.0.113.10"


def test_refusals_are_events_any_subscriber_hears_and_warnings_are_listed_apart(client, services):
    heard = []
    services.events.refused.connect(lambda _sender, event: heard.append(event), weak=False)
    sign_in(client, ADMIN)
    client.post("/unlock", data={"csrf_token": csrf_of(client.get("/diagnosis"))})
    client.post("/cancel", data={"csrf_token": "forged"})
    assert [(e.action, e.refusal, e.severity) for e in heard] == [
        ("unlock.refused", "privileged", "warning"), ("csrf.refused", "csrf", "info")]
    warnings = services.store.audit_events(severity="warning")
    assert [(e.action, e.upn) for e in warnings] == [("unlock.refused", ADMIN)]
