"""The control endpoint (faults, request log, clock, tunables) and the throttling and registration rules."""
from __future__ import annotations

import hashlib
import json
import time

import pytest
import requests

from app.simulator.clients import Client
from app.simulator.control import FaultBook
from app.simulator.oidc import b64url, pkce_matches
from app.simulator.throttle import Throttle, category_of, directory_limit_for

BARBARA = "barbara.liskov@uni.test"


def test_control_endpoint_needs_its_token(simulator):
    session = simulator.session()
    assert session.get(simulator.base_url + "/_simulator/health", timeout=10).json() == {"ok": True}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = session.post(simulator.base_url + "/_simulator/faults", json={"path": "/v1.0", "kind": "503"},
                              headers=headers, timeout=10)
        assert answer.status_code == 401
    assert simulator.control("GET", "/faults").json() == {"faults": []}


def test_injected_faults_shape_and_consumption(simulator_factory):
    sim = simulator_factory()
    token = sim.app_token()
    session = sim.session()
    url = sim.graph_url + f"/users/{BARBARA}"
    get = lambda **kw: session.get(url, headers={"Authorization": f"Bearer {token}"}, **kw)  # noqa: E731

    sim.add_fault("/v1.0/users", "503", count=1)
    unavailable = get(timeout=10)
    assert unavailable.status_code == 503 and unavailable.json()["error"]["code"] == "serviceNotAvailable"
    assert get(timeout=10).status_code == 200, "a fault with count=1 is used up"

    sim.add_fault("/v1.0/users", "429", seconds=2, count=1)
    throttled = get(timeout=10)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    assert throttled.json()["error"]["code"] == "TooManyRequests"

    sim.add_fault("/v1.0/users", "latency", seconds=0.6, count=1)
    started = time.monotonic()
    assert get(timeout=10).status_code == 200 and time.monotonic() - started >= 0.6

    sim.add_fault("/v1.0/users", "hang", seconds=2, count=1)
    with pytest.raises(requests.Timeout):
        get(timeout=0.5)

    sim.add_fault(f"/{sim.tenant_id}/oauth2/v2.0/token", "503", count=1, method="POST")
    token_down = session.post(f"{sim.entra_authority}/oauth2/v2.0/token", data={}, timeout=10)
    assert token_down.status_code == 503 and token_down.json()["error"] == "serviceNotAvailable"
    assert sim.control("GET", "/faults").json() == {"faults": []}


@pytest.mark.parametrize("body", [
    {"path": "/v1.0", "kind": "explode"},
    {"path": "v1.0", "kind": "503"},
    {"path": "/v1.0", "kind": "latency", "seconds": -1},
    {"path": "/v1.0", "kind": "503", "count": 0},
    {"path": "/v1.0", "kind": "503", "seconds": "soon"},
])
def test_bad_fault_requests_are_refused_and_change_nothing(simulator, body):
    token = (simulator.state_dir / "control-token").read_text().strip()
    answer = simulator.session().post(simulator.base_url + "/_simulator/faults", json=body, timeout=10,
                                      headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 400 and answer.json()["error"]
    assert simulator.control("GET", "/faults").json() == {"faults": []}


def test_request_log_records_requests_but_no_tokens(simulator):
    since = simulator.last_seq()
    token = simulator.app_token()
    simulator.session().get(simulator.graph_url + f"/users/{BARBARA}", timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    entries = simulator.requests_log(since)
    graph = [e for e in entries if e["path"] == f"/v1.0/users/{BARBARA}"]
    assert len(graph) == 1 and graph[0]["status"] == 200 and graph[0]["app_id"] == simulator.graph_client_id
    assert any(e["path"].endswith("/oauth2/v2.0/token") for e in entries)
    assert token not in json.dumps(entries) and simulator.secret(simulator.graph_client_id) not in json.dumps(entries)


def test_tunables_and_membership_inputs_are_validated(simulator):
    limits = simulator.tune()
    assert limits["directory_limit"] == 3500 and limits["reports_limit"] == 5  # demo seed: a small tenant
    token = (simulator.state_dir / "control-token").read_text().strip()
    session, headers = simulator.session(), {"Authorization": f"Bearer {token}"}
    for path, body in [("/tunables", {"method_delay_seconds": 3, "report_lag_seconds": -1}),
                       ("/tunables", {"no_such_setting": 1}), ("/clock", {"advance_seconds": -5}),
                       ("/membership", {"upn": BARBARA, "group": "admins"}),
                       ("/membership", {"upn": "nobody@uni.test", "group": "bypass"})]:
        answer = session.post(simulator.base_url + "/_simulator" + path, json=body, headers=headers, timeout=10)
        assert answer.status_code == 400, (path, answer.text)
    assert simulator.tune()["method_delay_seconds"] == 1.0


def test_token_bucket_refills_at_the_documented_rate():
    throttle = Throttle(directory_limit=3500)
    for i in range(5):
        assert throttle.take("reports", "app", "tenant", now=100.0) is None
    assert throttle.take("reports", "app", "tenant", now=100.0) == 2.0  # 5 per 10 s: one token every 2 s
    assert throttle.take("reports", "other-app", "tenant", now=100.0) is None  # per app per tenant
    assert throttle.take("reports", "app", "tenant", now=102.0) is None
    assert throttle.take("directory", "app", "tenant", now=100.0, cost=3500) is None
    assert throttle.take("directory", "app", "tenant", now=100.0) == 0.003  # in ms, as Graph: 1/350 s rounded up
    assert throttle.take("reports", "app", "tenant", now=103.0) == 1.0  # half refilled: fractions, not a whole 2


def test_limits_and_categories_follow_microsofts_tables():
    assert [directory_limit_for(n) for n in (10, 49, 50, 500, 501)] == [3500, 3500, 5000, 5000, 8000]
    assert category_of("/auditLogs/signIns") == "reports"
    assert category_of("/reports/authenticationMethods/userRegistrationDetails/x") == "reports"
    assert category_of("/users/x/authentication/methods") == "directory"


def test_fault_book_uses_faults_in_order_and_by_method():
    book = FaultBook()
    book.add("/v1.0/users", "503", 0, method="POST", count=1)
    book.add("/v1.0", "latency", 0.1, count=2)
    assert book.take("GET", "/v1.0/users/x").kind == "latency"
    assert book.take("POST", "/v1.0/users/x").kind == "503"
    assert book.take("POST", "/v1.0/users/x").kind == "latency"
    assert book.take("POST", "/v1.0/users/x") is None


def test_pkce_and_loopback_redirect_rules():
    verifier = "a" * 43
    assert pkce_matches(verifier, b64url(hashlib.sha256(verifier.encode()).digest()), "S256")
    assert not pkce_matches("b" * 43, b64url(hashlib.sha256(verifier.encode()).digest()), "S256")
    assert pkce_matches(verifier, verifier, "plain")
    client = Client("id", "app", "", ("http://localhost/auth/callback", "https://portal.example/auth/callback"), ())
    assert client.redirect_uri_allowed("http://localhost:5000/auth/callback")  # any port on loopback
    assert client.redirect_uri_allowed("https://portal.example/auth/callback")
    assert not client.redirect_uri_allowed("https://portal.example:8443/auth/callback")
    assert not client.redirect_uri_allowed("http://localhost:5000/other")
    assert not client.redirect_uri_allowed("http://evil.example/auth/callback")


def test_request_log_redacts_codes_in_query_strings(simulator):
    since = simulator.last_seq()
    simulator.session().get(simulator.mysignins_url + "/callback?state=s&code=SECRET-CODE-VALUE", timeout=10,
                            allow_redirects=False)
    entries = [e for e in simulator.requests_log(since) if e["path"] == "/security-info/callback"]
    assert entries and "SECRET-CODE-VALUE" not in entries[0]["query"] and "state=s" in entries[0]["query"]
