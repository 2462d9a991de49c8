"""The Graph adapter inside gunicorn: preloaded master (warm_up, then fork), gthread workers, concurrent calls."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.fixtures.simulator import free_port

ROOT = Path(__file__).resolve().parents[2]
STUDENTS = ("ada.lovelace@uni.test", "barbara.liskov@uni.test", "grace.hopper@uni.test", "donald.knuth@uni.test")

APP = textwrap.dedent('''
    """A one-route WSGI app: GET /?upn=... answers with what the Graph adapter found."""
    import json
    import os
    from urllib.parse import parse_qs

    from app.adapters.graph import GraphClient

    GRAPH = GraphClient(os.environ["T_AUTHORITY"], os.environ["T_CLIENT_ID"], os.environ["T_SECRET"],
                        os.environ["T_GRAPH_URL"], ca_file=os.environ["T_CA"])
    GRAPH.warm_up()  # in the master, before the fork (--preload)
    GRAPH.gather_evidence("margaret.hamilton@uni.test")  # the master's own loop and connections exist now


    def app(environ, start_response):
        upn = parse_qs(environ["QUERY_STRING"])["upn"][0]
        evidence = GRAPH.gather_evidence(upn)
        body = json.dumps({"pid": os.getpid(), "upn": evidence.user.upn if evidence.user else None,
                           "trips": evidence.round_trips, "errors": sorted(evidence.errors)}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
''')


@pytest.fixture
def portal_like_server(simulator, tmp_path):
    (tmp_path / "graph_probe.py").write_text(APP, encoding="utf-8")
    simulator.tune(reports_limit=1000)  # 16 diagnoses in a burst: this is not a throttling test
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
           "T_AUTHORITY": simulator.entra_authority, "T_CLIENT_ID": simulator.graph_client_id,
           "T_SECRET": simulator.secret(simulator.graph_client_id), "T_GRAPH_URL": simulator.graph_url,
           "T_CA": simulator.ca_file}
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "-k", "gthread", "--threads", "4",
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", "graph_probe:app"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                requests.get(url, params={"upn": STUDENTS[0]}, timeout=10)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn did not start: {process.stdout.read().decode()[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        simulator.tune(reports_limit=5)
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.slow
def test_preloaded_gthread_workers_share_nothing_they_should_not(portal_like_server):
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda i: requests.get(portal_like_server, params={"upn": STUDENTS[i % 4]},
                                                       timeout=30).json(), range(16)))
    assert [a["upn"] for a in answers] == [STUDENTS[i % 4] for i in range(16)]
    assert all(a["trips"] == 1 and a["errors"] == [] for a in answers), answers
