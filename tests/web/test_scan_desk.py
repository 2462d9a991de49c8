"""The desk's "Who will loop" page: a scan in the background with progress, the results, invites; real Graph adapter
against the simulator, the embedded directory, a real SQLite store, the Flask test client."""
from __future__ import annotations

import csv
import io
import time

import pytest

from app.adapters.store import InviteFilter
from tests.web.conftest import SEED, demo_settings
from tests.web.test_helpdesk import AUDITOR, DESK, ORIGIN, page_csrf, refusals, staff_sign_in

WILL_LOOP = {"ada.lovelace@uni.test", "alan.turing@uni.test", "edsger.dijkstra@uni.test"}


@pytest.fixture
def graph(simulated_graph):
    return simulated_graph


@pytest.fixture
def settings(tmp_path):
    return demo_settings(tmp_path, helpdesk_group_dn=SEED.helpdesk_group_dn, auditor_group_dn=SEED.auditor_group_dn,
                         smtp_host="127.0.0.1", smtp_port=2525, smtp_security="none", smtp_from="desk@uni.test")


def start(client, kind: str, value: str, reason: str = "intake 2026"):
    token = page_csrf(client, "/helpdesk/scans")
    return client.post("/helpdesk/scans", data={"csrf_token": token, "kind": kind, "value": value, "reason": reason},
                       headers=ORIGIN)


def finished(client, location: str, services, seconds: float = 60.0) -> dict:
    """Run the worker's scan part and poll the status as the page's script does until the scan is no longer
    running; return the last answer."""
    deadline, status = time.monotonic() + seconds, {}
    while time.monotonic() < deadline:
        services.scans.work()
        status = client.get(location + "/status").get_json()
        assert 0 <= status["percent"] <= 100 and status["words"]
        if status["state"] != "running":
            return status
        time.sleep(0.2)
    raise AssertionError(f"the scan did not finish: {status}")


def test_a_group_scan_runs_in_the_background_and_shows_who_will_loop(client, services):
    staff_sign_in(client, DESK)
    form = client.get("/helpdesk/scans").get_data(as_text=True)
    assert 'id="scan-form"' in form and "Who will loop" in form
    answer = start(client, "group", SEED.required_group_dn)
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert finished(client, location, services)["state"] == "done"
    page = client.get(location).get_data(as_text=True)
    rows = {upn: page.index(upn) for upn in WILL_LOOP | {"grace.hopper@uni.test"}}
    assert max(rows[u] for u in WILL_LOOP) < rows["grace.hopper@uni.test"]  # who will loop comes first
    assert page.count('data-outcome="will_loop"') == 3 and 'data-outcome="will_register"' in page
    assert "signed in to the Authenticator app or has a device, but no method" in page
    assert 'id="invite-form"' in page and "<script" not in page.split("</main>")[0].split('id="counts"')[1]
    run = services.store.audit_events(action="scan.run")[0]
    assert (run.actor_kind, run.actor, run.reason, run.detail["will_loop"]) == ("staff", DESK, "intake 2026", 3)


def test_the_invites_go_to_the_ones_who_will_loop_once(client, services):
    staff_sign_in(client, DESK)
    location = start(client, "group", SEED.required_group_dn).headers["Location"]
    finished(client, location, services)
    token = page_csrf(client, location)
    sent = client.post(location + "/invite", data={"csrf_token": token, "reason": "before MFA on Monday"},
                       headers=ORIGIN, follow_redirects=True)
    assert "3 students got an invite by mail." in sent.get_data(as_text=True)
    assert {i.upn for i in services.invites.search(InviteFilter())} == WILL_LOOP
    assert services.store.audit_events(action="scan.invited")[0].reason == "before MFA on Monday"
    again = client.post(location + "/invite", data={"csrf_token": token, "reason": "twice"}, headers=ORIGIN,
                        follow_redirects=True)
    assert "were sent already" in again.get_data(as_text=True)
    assert len(services.invites.search(InviteFilter())) == 3
    assert [r.detail["refusal"] for r in refusals(services, "scan.invite")] == ["already_invited"]


def test_a_pasted_list_is_scanned_and_bad_lines_are_named(client, services):
    staff_sign_in(client, DESK)
    location = start(client, "list", "ada.lovelace@uni.test\ngrace.hopper@uni.test\n=cmd|' /C calc'!A0\n"
                     ).headers["Location"]
    assert finished(client, location, services)["state"] == "done"
    page = client.get(location).get_data(as_text=True)
    assert page.count('data-outcome="will_loop"') == 1 and page.count('data-outcome="will_register"') == 1


@pytest.mark.parametrize(("kind", "value", "code", "words"), [
    ("group", "CN=Nope,OU=Groups,DC=uni,DC=test", "directory", "could not list these students"),
    ("ou", "not a dn", "directory", "could not list these students"),
    ("list", "upn\nnot a user name", "nobody", "no students to scan"),
    ("list", "name\nAda", "bad_list", "The list cannot be read"),
    ("group", "", "no_source", "Give a group, an OU or a list"),
])
def test_a_source_that_names_nobody_scans_nothing_and_says_why(client, services, kind, value, code, words):
    staff_sign_in(client, DESK)
    page = start(client, kind, value)
    assert page.status_code == 302 and page.headers["Location"].endswith("/helpdesk/scans")
    assert words in client.get("/helpdesk/scans").get_data(as_text=True)
    assert services.scans.scans.recent() == []
    assert [r.detail["refusal"] for r in refusals(services, "scan.start")] == [code]


def test_without_a_reason_nothing_is_scanned(client, services):
    staff_sign_in(client, DESK)
    start(client, "group", SEED.required_group_dn, reason="  ")
    assert services.scans.scans.recent() == [] and refusals(services, "scan.start")


def test_an_auditor_reads_scans_but_starts_none(client, services):
    staff_sign_in(client, AUDITOR)
    page = client.get("/helpdesk/scans")
    assert page.status_code == 200 and 'id="scan-form"' not in page.get_data(as_text=True)
    token = page_csrf(client, "/helpdesk/audit")
    refused = client.post("/helpdesk/scans", data={"csrf_token": token, "kind": "group", "reason": "look",
                                                   "value": SEED.required_group_dn}, headers=ORIGIN)
    assert refused.status_code == 403 and services.scans.scans.recent() == []
    assert [r.detail["refusal"] for r in refusals(services, "scan.start")] == ["read_only"]


def test_an_unknown_scan_is_not_found(client):
    staff_sign_in(client, DESK)
    assert client.get("/helpdesk/scans/999").status_code == 404
    assert client.get("/helpdesk/scans/999/status").status_code == 404


def test_a_finished_scan_downloads_as_csv_with_no_formula_and_the_export_is_audited(client, services):
    staff_sign_in(client, DESK)
    location = start(client, "list", "ada.lovelace@uni.test\ngrace.hopper@uni.test\n").headers["Location"]
    scan_id = int(location.rsplit("/", 1)[1])
    token = page_csrf(client, location)
    assert client.post(location + "/export", data={"csrf_token": token}, headers=ORIGIN).status_code == 404  # queued
    # A name from the directory is hostile too: a spreadsheet must show it, never run it.
    hostile = {"upn": "ada.lovelace@uni.test", "outcome": "will_loop", "reason": "unregistered",
               "display_name": "=HYPERLINK(\"http://evil.test\")", "authenticator_sign_ins": "0", "last_sign_in": "",
               "devices": "", "methods": ""}
    services.scans.scans.record_chunk(scan_id, {hostile["upn"]: hostile}, graph_requests=0, sign_in_pages=0,
                                      seconds=0.0, now=services.scans.clock())
    assert finished(client, location, services)["state"] == "done"
    page = client.get(location).get_data(as_text=True)
    assert 'id="export-form"' in page
    answer = client.post(location + "/export", data={"csrf_token": page_csrf(client, location)}, headers=ORIGIN)
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert f"proofup-scan-{scan_id}.csv" in answer.headers["Content-Disposition"]
    lines = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert lines[0] == ["upn", "outcome", "reason", "display_name", "authenticator_sign_ins", "last_sign_in",
                        "devices", "methods"]
    assert len(lines) == 3 and lines[1][:4] == ["ada.lovelace@uni.test", "will_loop", "unregistered",
                                                "'=HYPERLINK(\"http://evil.test\")"]
    assert lines[2][:2] == ["grace.hopper@uni.test", "will_register"]
    exported = services.store.audit_events(action="scan.exported")[0]
    assert (exported.actor, exported.detail["scan_id"], exported.detail["rows"]) == (DESK, scan_id, 2)


def test_a_queued_scan_says_it_waits_for_the_worker_and_an_outage_says_it_tries_again(client, services):
    staff_sign_in(client, DESK)
    location = start(client, "group", SEED.required_group_dn).headers["Location"]
    queued = client.get(location + "/status").get_json()
    assert (queued["state"], queued["percent"]) == ("running", 0)
    assert "waiting for the portal's background worker" in queued["words"]
    services.scans.scans.waiting(int(location.rsplit("/", 1)[1]), "unavailable", now=services.scans.clock())
    assert "tries again by itself" in client.get(location + "/status").get_json()["words"]
    assert finished(client, location, services)["state"] == "done"  # the next tick clears it


def _list_states(client, lang: str = "en") -> list[tuple[str, str]]:
    """Return (data-state, words) of each scan in the list, newest first."""
    import re

    page = client.get(f"/helpdesk/scans?lang={lang}").get_data(as_text=True)
    return re.findall(r'<td class="state" data-state="(\w+)">([^<]*)</td>', page)


def test_the_scan_list_says_which_scans_wait_run_are_done_or_failed(client, services):
    staff_sign_in(client, DESK)
    done = int(start(client, "list", "ada.lovelace@uni.test").headers["Location"].rsplit("/", 1)[1])
    finished(client, f"/helpdesk/scans/{done}", services)
    failed = int(start(client, "list", "grace.hopper@uni.test").headers["Location"].rsplit("/", 1)[1])
    services.scans.scans.fail(failed, "unavailable", now=services.scans.clock())
    running = int(start(client, "group", SEED.required_group_dn).headers["Location"].rsplit("/", 1)[1])
    total = services.scans.scans.get(running).total
    services.scans.scans.progress(running, phase="graph", done=total // 2, total=total, now=services.scans.clock())
    start(client, "list", "alan.turing@uni.test")  # the worker has not taken it up yet
    half = int(100 * (total // 2) / total)
    assert _list_states(client) == [("queued", "queued"), ("running", f"running: {half} %"), ("failed", "failed"),
                                    ("done", "done")]
    assert [words for _, words in _list_states(client, "de")] == [
        "in der Warteschlange", f"läuft: {half} %", "fehlgeschlagen", "erledigt"]
