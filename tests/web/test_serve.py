"""`proofup serve`: the portal under real gunicorn (preloaded, threaded), against Samba and the simulator."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.adapters.http import make_session
from app.demo import DemoStack
from tests.web.serving import portal_env, start_serve

pytestmark = [pytest.mark.samba, pytest.mark.slow]


@pytest.fixture
def stack(tmp_path):
    stack = DemoStack(tmp_path / "sim", worker=False).start()
    yield stack
    stack.stop()


@pytest.fixture
def served(tmp_path, samba_dc, stack):
    """Run `proofup serve` with PROOFUP_* from the environment: the simulator's cloud, Samba's directory."""
    env = portal_env(stack, samba_dc, tmp_path, f"sqlite:///{tmp_path}/portal.sqlite3")
    served = start_serve(env, tmp_path / "serve.log", stack)
    yield served
    served.stop()


def test_serve_signs_in_and_diagnoses_under_gunicorn(served):
    portal = make_session(None)
    assert portal.get(served.url + "/readyz").json()["status"] == "ready"
    for upn, state in (("ada.lovelace@uni.test", "stuck"), ("barbara.liskov@uni.test", "registered")):
        _, page = served.sign_in(upn)
        assert page.status_code == 200 and f'data-state="{state}"' in page.text


def test_a_100_mb_upload_is_refused_before_its_body_is_read(served):
    """No MAX_CONTENT_LENGTH used to mean: the form parser read (and spooled to disk) the whole body first."""
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(b"POST /auth/callback HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"  # the portal's own address
                    b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 104857600\r\n\r\n" % port
                    + b"state=x&" * 128)
        started = time.monotonic()
        answer = b""
        while b"</html>" not in answer and time.monotonic() - started < 10:
            chunk = raw.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert time.monotonic() - started < 5  # answered while 99.99 % of the body was never sent
    assert b"more data than this portal accepts" in answer


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_workers_share_no_database_connection_opened_before_the_fork(database, request, tmp_path, samba_dc, stack):
    # The schema upgrade runs in gunicorn's master before it forks: a pooled connection left open there would be
    # inherited by both workers, which then talk over one socket at once (PostgreSQL: "EMPTY_QUERY", 500s).
    url = (f"sqlite:///{tmp_path}/portal.sqlite3" if database == "sqlite"
           else request.getfixturevalue("postgres_server").create_database())
    env = portal_env(stack, samba_dc, tmp_path, url, PROOFUP_RATE_LIMIT_SIGN_IN="10000 per minute")
    for start in range(2):  # the first requests after a start are the ones that meet an inherited connection
        served = start_serve(env, tmp_path / f"serve-{start}.log", stack)
        try:
            def hit(i: int) -> int:
                session = make_session(None)
                path = "/readyz" if i % 2 else "/sign-in"  # a read and a write (the pending sign-in flow)
                return session.get(served.url + path, allow_redirects=False, timeout=30).status_code

            with ThreadPoolExecutor(max_workers=16) as pool:
                statuses = list(pool.map(hit, range(160)))
        finally:
            served.stop()
        log = served.log()
        assert statuses.count(200) == 80 and statuses.count(302) == 80, (statuses, log[-3000:])
        assert "Traceback" not in log and "InterfaceError" not in log and "OperationalError" not in log, log[-3000:]


def test_metrics_under_gunicorn_add_up_every_worker_and_start_afresh(tmp_path, samba_dc, stack):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_999999999.db"  # left by a process of an earlier start (no such pid)
    stale.write_bytes(b"\0" * 16)
    env = portal_env(stack, samba_dc, tmp_path, f"sqlite:///{tmp_path}/portal.sqlite3",
                     PROOFUP_METRICS_TOKEN="metrics-token-0123456789", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    served = start_serve(env, tmp_path / "serve.log", stack)
    try:
        scraper = make_session(None)
        assert scraper.get(served.url + "/metrics").status_code == 403
        page = scraper.get(served.url + "/metrics", headers={"Authorization": "Bearer metrics-token-0123456789"})
        assert page.status_code == 200 and 'proofup_open_grants{state="active"} 0.0' in page.text
        assert not stale.exists()
        for upn in ("ada.lovelace@uni.test", "barbara.liskov@uni.test", "grace.hopper@uni.test"):
            assert served.sign_in(upn)[1].status_code == 200  # each may land on either worker
        # The worker is another process: with the same directory its numbers are in the portal's scrape.
        worker = subprocess.run([sys.executable, "-m", "app.cli", "worker", "--once"], env=env,
                                capture_output=True, text=True, timeout=120)
        assert worker.returncode == 0, worker.stderr[-2000:]
        scraped = {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(
            scraper.get(served.url + "/metrics", headers={"Authorization": "Bearer metrics-token-0123456789"}).text)
            for s in family.samples}
        checked = checked_dependencies(scraper, served.url, "metrics-token-0123456789")
    finally:
        served.stop()
    assert scraped[("proofup_sign_ins_total", (("outcome", "succeeded"), ("reason", "ok")))] == 3
    assert scraped[("proofup_worker_cycle_seconds_count", ())] == 1
    assert scraped[("proofup_worker_last_success_timestamp_seconds", ())] > time.time() - 300
    assert sum(v for (name, _), v in scraped.items() if name == "proofup_ldap_operations_total") >= 3
    # Each forked worker checks the real Samba and the simulator for itself, after the fork.
    assert {(d["name"], d["ok"]) for d in checked["dependencies"]} == {("directory", True), ("sign-in", True),
                                                                        ("graph", True)}, checked


def checked_dependencies(scraper, url: str, token: str) -> dict:
    """Ask /health/dependencies until the answering worker has finished a round (each worker checks alone)."""
    deadline, report = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        report = scraper.get(url + "/health/dependencies", headers={"Authorization": f"Bearer {token}"}).json()
        if report["status"] != "checking":
            return report
        time.sleep(0.2)
    raise AssertionError(f"no round of dependency checks finished within 30 s: {report}")


def test_json_logs_under_gunicorn_are_one_object_per_line_with_the_request_id(tmp_path, samba_dc, stack):
    env = portal_env(stack, samba_dc, tmp_path, f"sqlite:///{tmp_path}/portal.sqlite3", PROOFUP_LOG_FORMAT="json")
    served = start_serve(env, tmp_path / "serve.log", stack)
    try:
        client = make_session(None)
        assert client.get(served.url + "/healthz", headers={"X-Request-ID": "probe-0123456789"}).ok
        missing = client.get(served.url + "/no-such-page\r\nforged")
        assert missing.status_code == 404 and missing.headers["X-Request-ID"] in missing.text
    finally:
        served.stop()
    records = [json.loads(line) for line in served.log().splitlines() if line.strip()]  # each line is JSON
    access = [r for r in records if r["logger"] == "gunicorn.access"]
    probe = next(r for r in access if r.get("request_id") == "probe-0123456789")
    assert {"path": "/healthz", "status": "200", "method": "GET"}.items() <= probe.items()
    assert any(r.get("status") == "404" and r.get("request_id") == missing.headers["X-Request-ID"] for r in access)
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records)
