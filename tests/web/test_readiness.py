"""/readyz says whether this instance can serve its pages; AD and the cloud are checked apart, cached, for monitoring.

The directory here is "down" as a load balancer would meet it: a DC whose port accepts and hangs up at once.
It counts every connection, so the tests see how often the portal really tried AD.
"""
from __future__ import annotations

import socket
import threading
import time

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from app.adapters.store import schema_head
from app.wiring import build_directory
from tests.web.conftest import demo_settings, sign_in

TOKEN = "metrics-token-0123456789"
SCRAPER = {"Authorization": f"Bearer {TOKEN}"}
PERIOD = 15.0


class HangingUpDc:
    """A TCP listener on loopback that accepts a connection, counts it and closes it (a DC that is down)."""

    def __init__(self):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"ldaps://127.0.0.1:{self.socket.getsockname()[1]}"
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return  # closed
            self.connections += 1
            conn.close()

    def close(self):
        self.socket.close()


@pytest.fixture
def dead_dc():
    dc = HangingUpDc()
    yield dc
    dc.close()


@pytest.fixture
def database(request, tmp_path):
    """(the PostgreSQL server or None, the database's URL): SQLite unless a test asks for "postgres"."""
    if getattr(request, "param", "sqlite") == "postgres":
        server = request.getfixturevalue("postgres_server")
        return server, server.create_database("readiness")
    return None, f"sqlite:///{tmp_path}/portal.sqlite3"


@pytest.fixture
def settings(tmp_path, dead_dc, database):
    """The test portal's settings with AD at the dead DC (the pages use the embedded directory, as elsewhere)."""
    return demo_settings(tmp_path, database_url=database[1], authority="https://127.0.0.1:9/adfs",
                         ldap_url=dead_dc.url, ldap_bind_dn="CN=portal-svc,OU=Service,DC=uni,DC=test",
                         ldap_password="not-used-0123", ldap_base_dn="DC=uni,DC=test", metrics_token=TOKEN,
                         dependency_check_seconds=PERIOD)


@pytest.fixture
def directory(settings):
    """The portal's own directory is the real LDAP adapter, at the dead DC."""
    ldap = build_directory(settings)
    yield ldap
    ldap.close()


def dependencies(client) -> dict:
    answer = client.get("/health/dependencies", headers=SCRAPER)
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    return answer.get_json()


def test_readyz_stays_ready_with_ad_down_and_never_asks_ad(client, dead_dc):
    for _ in range(50):
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.get_json()
    assert ready.get_json() == {"status": "ready", "checks": {"settings": "ok", "database": "ok", "schema": "ok"}}
    assert dead_dc.connections == 0  # it used to run an LDAP search on every probe, and answer 503
    page = sign_in(client, "ada.lovelace@uni.test")  # so the balancer sends students to the portal's own page
    assert page.status_code == 503 and "account system is not answering" in page.get_data(as_text=True)
    assert dead_dc.connections > 0


def test_ad_is_tried_once_a_period_however_often_monitoring_asks(client, services, dead_dc, clock):
    first = dependencies(client)
    assert first["status"] == "checking" and first["dependencies"] == []  # the scrape did not wait for the check
    for _ in range(49):
        dependencies(client)
    assert services.dependencies.wait(30)
    assert dead_dc.connections == 1
    for _ in range(50):
        assert client.get("/readyz").status_code == 200
        dependencies(client)
    assert dead_dc.connections == 1
    clock.advance(PERIOD)  # the next period: one more attempt, whatever the number of scrapes
    for _ in range(50):
        dependencies(client)
    assert services.dependencies.wait(30)
    assert dead_dc.connections == 2


def test_the_dependency_report_names_what_is_down(client, services, dead_dc):
    dependencies(client)
    assert services.dependencies.wait(30)
    report = dependencies(client)
    assert report["status"] == "down" and report["period_seconds"] == PERIOD and not report["checking"]
    found = {(d["name"], d["target"]): d for d in report["dependencies"]}
    assert set(found) == {("directory", dead_dc.url), ("sign-in", "https://127.0.0.1:9/adfs")}
    assert not found[("directory", dead_dc.url)]["ok"] and dead_dc.url in found[("directory", dead_dc.url)]["detail"]
    assert "not-used-0123" not in str(report)


def test_the_gauges_on_metrics_say_which_dependency_is_down(client, services, dead_dc):
    client.get("/metrics", headers=SCRAPER)
    assert services.dependencies.wait(30)
    scraped = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(client.get("/metrics", headers=SCRAPER).get_data(True))
               for s in family.samples}
    assert scraped[("proofup_dependency_up", (("dependency", "directory"), ("target", dead_dc.url)))] == 0
    assert scraped[("proofup_dependency_checked_timestamp_seconds", ())] > time.time() - 300


@pytest.mark.parametrize(("header", "status"), [({}, 403), ({"Authorization": "Bearer wrong-token-0123456789"}, 403)])
def test_the_dependency_report_is_closed_like_metrics(client, header, status):
    assert client.get("/health/dependencies", headers=header).status_code == status


def test_the_dependency_report_is_absent_unless_an_admin_opens_it(tmp_path, services):
    closed = create_app(demo_settings(tmp_path), services=services).test_client()
    assert closed.get("/health/dependencies").status_code == 404


def test_readyz_is_not_ready_while_the_schema_is_not_this_versions(client, services):
    with services.store.engine.begin() as db:
        db.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
    behind = client.get("/readyz")
    assert behind.status_code == 503 and behind.get_json()["checks"]["schema"] == "failed"
    with services.store.engine.begin() as db:
        db.exec_driver_sql(f"UPDATE alembic_version SET version_num = '{schema_head()}'")
    assert client.get("/readyz").status_code == 200


@pytest.mark.postgres
@pytest.mark.parametrize("database", ["postgres"], indirect=True)
def test_readyz_is_not_ready_when_the_database_is_gone(client, database):
    server, url = database
    assert client.get("/readyz").status_code == 200
    with psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", dbname="postgres",
                         autocommit=True) as admin:
        admin.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    gone = client.get("/readyz")
    assert gone.status_code == 503
    assert gone.get_json() == {"status": "not ready",
                               "checks": {"settings": "ok", "database": "failed", "schema": "failed"}}
