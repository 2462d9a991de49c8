"""The portal in the Flask test client over the embedded directory, a real SQLite store and fakes."""
from __future__ import annotations

import pytest

from app import create_app
from app.adapters.budget import UnlimitedBudget
from app.adapters.directory_embedded import EmbeddedDirectory
from app.adapters.store import Store
from app.config import load_settings
from app.seed import load_seed
from app.web import SESSION_COOKIE
from app.wiring import build_grants, build_services
from tests.web.fakes import FakeGraph, FakeIdentity, ManualClock, fake_code, state_of

SEED = load_seed()


def demo_settings(tmp_path, **overrides):
    """Settings shaped like the demo's, pointing at nothing real."""
    values = dict(
        secret_key="test-secret-key-0123456789",
        authority="https://idp.test/adfs",
        client_id="portal",
        tenant_id=SEED.tenant_id,
        required_group_dn=SEED.required_group_dn,
        bypass_group_dn=SEED.bypass_group_dn,
        privileged_group_dns=(SEED.privileged_group_dn,),
        database_url=f"sqlite:///{tmp_path}/portal.sqlite3",
        mysignins_url="https://mysignins.test/security-info",
        replication_wait_seconds=0.0,
        public_url="http://localhost",  # the Flask test client's host
    )
    values.update(overrides)
    return load_settings({}, **values)


@pytest.fixture
def directory():
    return EmbeddedDirectory(SEED)


@pytest.fixture
def graph():
    return FakeGraph(SEED)


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def settings(tmp_path):
    return demo_settings(tmp_path)


@pytest.fixture
def services(settings, directory, graph, clock):
    store = Store(settings.database_url)
    store.upgrade()
    svc = build_services(settings, directory=directory, graph=graph, identity=FakeIdentity(), store=store,
                         grants=build_grants(settings, store, directory, clock), budget=UnlimitedBudget(), clock=clock)
    yield svc
    svc.close()


@pytest.fixture
def worker_pass(services, clock):
    """Return one of the worker's confirmation passes on the test clock (every methods check is the worker's)."""
    from app.wiring import build_worker

    sweeper, _lease = build_worker(services, clock=clock)
    return sweeper.run_confirm_pass


@pytest.fixture
def app(settings, services):
    app = create_app(settings, services=services)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_of(response) -> str:
    """Pull the CSRF token out of a rendered page."""
    html = response.get_data(as_text=True)
    marker = 'name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def check_until_done(client, token: str, seconds: float = 15.0) -> dict:
    """Press "I have finished" every half second until the worker has released the grant; return the last status."""
    import time

    deadline, status = time.monotonic() + seconds, {}
    while status.get("phase") != "done" and time.monotonic() < deadline:
        time.sleep(0.5)
        status = client.post("/status/check", headers={"X-CSRFToken": token}).get_json()
    return status


def sign_in(client, upn: str):
    """Go through both legs of the sign-in as the authority would; return the page signed in to."""
    client.delete_cookie(SESSION_COOKIE)  # /sign-in sends a signed-in visitor straight to the diagnosis
    start = client.get("/sign-in")
    assert start.status_code == 302
    state = state_of(start.headers["Location"])
    return client.post("/auth/callback", data={"state": state, "code": fake_code(upn)}, follow_redirects=True)


def session_token(client) -> str | None:
    """Return the session token the browser holds, or None."""
    cookie = client.get_cookie(SESSION_COOKIE)
    return cookie.value if cookie else None


def copy_of(app, client):
    """Return a second browser holding a copy of every cookie the first one has (a stolen cookie jar)."""
    other = app.test_client()
    for name in (SESSION_COOKIE, "proofup_session"):
        cookie = client.get_cookie(name)
        if cookie is not None:
            other.set_cookie(name, cookie.value)
    return other
