"""The weekly unlock cap: counted from the grant rows (so every instance agrees), shown on the page,
refused and audited at the cap, lifted as the window rolls on, passed only by staff with a reason."""
from __future__ import annotations

import pytest

from app import cli, create_app
from app.adapters.budget import UnlimitedBudget
from app.adapters.store import Store
from app.wiring import build_grants, build_services
from tests.web.conftest import SEED, csrf_of, sign_in
from tests.web.fakes import FakeIdentity

HALF = "ada.lovelace@uni.test"
WEEK = 7 * 24 * 3600


def text_of(response) -> str:
    return response.get_data(as_text=True)


def unlock_and_cancel(client) -> None:
    token = csrf_of(client.get("/diagnosis"))
    assert client.post("/unlock", data={"csrf_token": token}).headers["Location"].endswith("/guide")
    client.post("/cancel", data={"csrf_token": token})


@pytest.fixture
def second_instance(settings, directory, graph, clock):
    """Another portal instance over the same database (its own process state, its own rate counters)."""
    store = Store(settings.database_url)
    svc = build_services(settings, directory=directory, graph=graph, identity=FakeIdentity(), store=store,
                         grants=build_grants(settings, store, directory, clock), budget=UnlimitedBudget(), clock=clock)
    app = create_app(settings, services=svc)
    app.config["TESTING"] = True
    yield app.test_client()
    svc.close()


def test_after_the_cap_the_page_sends_the_student_to_the_service_desk(client, second_instance, services, clock):
    sign_in(client, HALF)
    unlock_and_cancel(client)
    unlock_and_cancel(client)
    sign_in(second_instance, HALF)
    unlock_and_cancel(second_instance)  # the third, on another instance: the count is in the database
    assert services.store.audit_events(HALF, action="unlock.cap_reached")
    page = text_of(client.get("/diagnosis"))
    assert 'id="unlock-cap"' in page and 'id="unlock"' not in page and "service desk" in page
    refused = client.post("/unlock", data={"csrf_token": csrf_of(client.get("/diagnosis"))}, follow_redirects=True)
    assert "used every set-up time this week" in text_of(refused)
    assert services.store.open_grant_for(HALF) is None and len(services.store.grants_for(HALF)) == 3
    event = services.store.audit_events(HALF, action="unlock.refused")[0]
    assert event.detail["refusal"] == "unlock_cap" and event.detail["client"] == "127.0.0.1"
    assert (event.detail["unlocks_in_window"], event.detail["max_unlocks"]) == (3, 3)


def test_the_window_rolls_on(client, services, clock):
    sign_in(client, HALF)
    for _ in range(3):
        unlock_and_cancel(client)
    clock.advance(WEEK + 1)  # the first three leave the window together
    sign_in(client, HALF)  # the session itself ended long ago
    assert 'id="unlock"' in text_of(client.get("/diagnosis"))


def test_the_cli_needs_to_ask_to_pass_the_cap_and_the_override_is_audited(client, services, settings, monkeypatch,
                                                                          capsys, directory):
    sign_in(client, HALF)
    for _ in range(3):
        unlock_and_cancel(client)
    services.close = lambda: None
    monkeypatch.setattr(cli, "_services", lambda _settings: services)
    monkeypatch.setattr(cli, "load_settings", lambda: settings)
    assert cli.main(["grant", HALF, "--minutes", "15", "--reason", "ticket 4711"]) == cli.REFUSED
    assert "--override-cap" in capsys.readouterr().err
    assert cli.main(["grant", HALF, "--minutes", "15", "--reason", "ticket 4711, checked", "--override-cap"]) == cli.OK
    assert directory.is_member(SEED.bypass_group_dn, directory.find_user(HALF).dn)
    override = services.store.audit_events(HALF, action="unlock.cap_override")[0]
    assert (override.actor_kind, override.reason) == ("cli", "ticket 4711, checked")
    assert override.severity == "warning"
