"""Weekly batches in the console (test client): upload, the worker's check, the preview, refusals audited."""
from __future__ import annotations

import csv
import io

import pytest

from app.domain.batches import BatchState
from tests.web.conftest import SEED, demo_settings
from tests.web.test_helpdesk import AUDITOR, DESK, ORIGIN, page_csrf, staff_sign_in

DEMO_CSV = ("\ufeffUserPrincipalName;Mail;Name\r\n"
            "ada.lovelace@uni.test;;Ada Lovelace\r\n"
            "Alan.Turing@uni.test ;alan@mail.test;Alan Turing\r\n"
            "grace.hopper@uni.test;;Grace Hopper\r\n"
            "barbara.liskov@uni.test;;Barbara Liskov\r\n"
            "margaret.hamilton@uni.test;;Margaret Hamilton\r\n"
            "ken.thompson@uni.test;;Ken Thompson\r\n"
            "dennis.ritchie@uni.test;;Dennis Ritchie\r\n"
            "radia.perlman@uni.test;;Radia Perlman\r\n"
            "nobody@uni.test;;Nobody\r\n"
            "ada.lovelace@uni.test;;Ada again\r\n"
            "=HYPERLINK(\"http://evil.example\");;Trap\r\n"
            "edsger.dijkstra@uni.test;not-an-address;Edsger\r\n").encode()


@pytest.fixture
def settings(tmp_path):
    return demo_settings(tmp_path, helpdesk_group_dn=SEED.helpdesk_group_dn, auditor_group_dn=SEED.auditor_group_dn)


def upload(client, data: bytes, *, name: str = "week48.csv", label: str = "Week 48", reason: str = "ticket 4711"):
    token = page_csrf(client, "/helpdesk/batches")
    return client.post("/helpdesk/batches/upload", headers=ORIGIN, content_type="multipart/form-data",
                       data={"csrf_token": token, "label": label, "reason": reason,
                             "file": (io.BytesIO(data), name)})


def uploaded(client, services, data: bytes = DEMO_CSV) -> int:
    response = upload(client, data)
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(response.headers["Location"].rsplit("/", 1)[1])


def test_an_upload_is_checked_by_the_worker_and_the_preview_says_why_each_row_is_skipped(client, services):
    staff_sign_in(client, DESK)
    batch_id = uploaded(client, services)
    status = client.get(f"/helpdesk/batches/{batch_id}/status").get_json()
    assert status["state"] == "checking" and status["total"] == 12 and status["checked"] == 3  # formula, duplicate, bad address
    assert status["counts"] == {"checking": 9, "skipped": 3}
    services.batches.work()
    status = client.get(f"/helpdesk/batches/{batch_id}/status").get_json()
    assert status["state"] == "ready" and status["percent"] == 100 and status["checked"] == 12
    skips = [(s["line"], s["skip"]) for s in status["students"]]
    assert skips == [(2, ""), (3, ""), (4, ""), (5, "registered"), (6, "not_required"), (7, "privileged"),
                     (8, "disabled"), (9, "unknown"), (10, "unknown"), (11, "duplicate"), (12, "formula"),
                     (13, "bad_address")]
    assert status["counts"] == {"not_sent": 3, "skipped": 9}
    page = client.get(f"/helpdesk/batches/{batch_id}").get_data(as_text=True)
    assert "already registered" in page and "named twice (first on line 2)" in page and "privileged" in page
    assert 'id="send"' in page and "3 students will get an invite" in page
    rows = services.batches.batches.rows(batch_id)
    assert [r.mail for r in rows[:2]] == ["ada.lovelace@uni.test", "alan@mail.test"]  # the directory's, the file's
    uploaded_event = services.store.search_audit(_query("batch.uploaded"))[0]
    assert uploaded_event.actor == DESK and uploaded_event.reason == "ticket 4711"


def _query(action):
    from app.domain.audit import AuditQuery

    return AuditQuery(action=action)


def test_the_page_polls_a_progress_bar_from_a_static_script_while_checking(client, services):
    staff_sign_in(client, DESK)
    batch_id = uploaded(client, services)
    page = client.get(f"/helpdesk/batches/{batch_id}").get_data(as_text=True)
    assert '<progress id="check-progress"' in page and "/static/helpdesk/batches.js" in page
    assert "<script>" not in page and "style=" not in page
    body = client.get(f"/helpdesk/batches/{batch_id}/status").get_json()
    assert body["state_label"] == "checking" and body["percent_label"].startswith("0 % done")


@pytest.mark.parametrize(("data", "words"), [
    (b"name;mail\nAda;ada@mail.test\n", "Columns found: name, mail"),
    ("upn\nj\u00f6rg@uni.test\n".encode("cp1252"), "Line 2 is not in UTF-8"),
    (b"upn\n", "names no students"),
    (b"", "The file is empty"),
])
def test_a_file_that_cannot_be_read_saves_nothing_and_says_why(client, services, data, words):
    staff_sign_in(client, DESK)
    response = upload(client, data)
    assert response.status_code == 302 and response.headers["Location"].endswith("/helpdesk/batches")
    assert words in client.get("/helpdesk/batches").get_data(as_text=True)
    assert services.batches.recent() == []
    assert [e.outcome for e in services.store.search_audit(_query("batch.upload"))] == ["refused"]


def test_ten_megabytes_get_a_clear_too_big_page_before_the_body_is_read(client, services):
    staff_sign_in(client, DESK)
    response = upload(client, b"upn\n" + b"x@uni.test\n" * 1_000_000)
    assert response.status_code == 413 and "too big" in response.get_data(as_text=True)
    assert services.batches.recent() == []
    (event,) = services.store.search_audit(_query("batch.upload"))
    assert event.detail["refusal"] == "too_big" and event.detail["bytes"] > 10_000_000


def test_a_file_between_the_portal_and_the_csv_limit_is_refused_by_the_csv_rules(client, services):
    staff_sign_in(client, DESK)
    response = upload(client, b"upn\n" + b"x@uni.test\n" * 100_000)  # 1.1 MB: over the CSV's 1 MiB
    assert response.status_code in (302, 413)
    assert services.batches.recent() == []


def test_no_reason_no_batch(client, services):
    staff_sign_in(client, DESK)
    response = upload(client, DEMO_CSV, reason="  ")
    assert response.status_code == 302 and services.batches.recent() == []


def test_an_auditor_sees_batches_but_cannot_upload(client, services):
    staff_sign_in(client, DESK)
    uploaded(client, services)
    other = client.application.test_client()
    staff_sign_in(other, AUDITOR)
    page = other.get("/helpdesk/batches").get_data(as_text=True)
    assert "Week 48" in page and 'id="upload-form"' not in page
    response = upload(other, DEMO_CSV)
    assert response.status_code == 403 and len(services.batches.recent()) == 1
    refused = [e for e in services.store.search_audit(_query("batch.upload")) if e.outcome == "refused"]
    assert refused[0].detail["refusal"] == "read_only" and refused[0].actor == AUDITOR


def test_an_unknown_batch_is_a_404(client):
    staff_sign_in(client, DESK)
    assert client.get("/helpdesk/batches/999").status_code == 404
    assert client.get("/helpdesk/batches/999/status").status_code == 404


def test_the_batch_is_not_sent_while_checking(client, services, monkeypatch):
    from dataclasses import replace

    monkeypatch.setattr(services.invites, "settings", replace(services.invites.settings, mail_enabled=True,
                                                              public_url="https://portal.test"))
    staff_sign_in(client, DESK)
    batch_id = uploaded(client, services)
    token = page_csrf(client, f"/helpdesk/batches/{batch_id}")
    client.post(f"/helpdesk/batches/{batch_id}/send", data={"csrf_token": token, "reason": "go"}, headers=ORIGIN)
    assert services.batches.batches.get(batch_id).state is BatchState.CHECKING
    refused = [e for e in services.store.search_audit(_query("batch.send")) if e.outcome == "refused"]
    assert refused[0].detail["refusal"] == "not_ready"


def test_without_a_mail_server_nothing_is_sent_and_the_desk_is_told(client, services):
    staff_sign_in(client, DESK)
    batch_id = uploaded(client, services)
    services.batches.work()
    token = page_csrf(client, f"/helpdesk/batches/{batch_id}")
    page = client.post(f"/helpdesk/batches/{batch_id}/send", data={"csrf_token": token, "reason": "go"},
                       headers=ORIGIN, follow_redirects=True).get_data(as_text=True)
    assert "no mail server" in page and services.batches.batches.get(batch_id).state is BatchState.READY


def test_the_export_neutralises_formulas_and_is_audited(client, services):
    staff_sign_in(client, DESK)
    batch_id = uploaded(client, services, b"upn,name\nada.lovelace@uni.test,=cmd|' /C calc'!A0\n-x@uni.test,x\n")
    token = page_csrf(client, f"/helpdesk/batches/{batch_id}")
    response = client.post(f"/helpdesk/batches/{batch_id}/export", data={"csrf_token": token}, headers=ORIGIN)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][:3] == ["line", "upn", "name"]
    assert rows[1][2] == "'=cmd|' /C calc'!A0" and rows[2][1] == "'-x@uni.test"
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    assert services.store.search_audit(_query("batch.exported"))[0].detail["rows"] == 2


def test_closing_a_checked_batch_is_audited_and_happens_once(client, services):
    staff_sign_in(client, DESK)
    batch_id = uploaded(client, services)
    services.batches.work()
    for _ in range(2):
        token = page_csrf(client, f"/helpdesk/batches/{batch_id}")
        page = client.post(f"/helpdesk/batches/{batch_id}/close", data={"csrf_token": token, "reason": "done"},
                           headers=ORIGIN, follow_redirects=True).get_data(as_text=True)
    assert "closed already" in page and services.batches.batches.get(batch_id).state is BatchState.CLOSED
    assert [e.outcome for e in services.store.search_audit(_query("batch.close"))] == ["refused"]
    assert len(services.store.search_audit(_query("batch.closed"))) == 1


def test_students_graph_did_not_answer_for_can_be_checked_again_before_sending(client, services, graph):
    staff_sign_in(client, DESK)
    batch_id = uploaded(client, services)
    graph.down = True  # Graph fails for every student of this check: nobody is invited on a guess
    services.batches.work()
    graph.down = False
    status = client.get(f"/helpdesk/batches/{batch_id}/status").get_json()
    assert status["state"] == "ready" and status["counts"] == {"skipped": 12}
    assert {s["skip"] for s in status["students"] if s["line"] in (2, 3, 4)} == {"check_failed"}
    token = page_csrf(client, f"/helpdesk/batches/{batch_id}")
    assert 'id="recheck"' in client.get(f"/helpdesk/batches/{batch_id}").get_data(as_text=True)
    page = client.post(f"/helpdesk/batches/{batch_id}/recheck", data={"csrf_token": token, "reason": "Graph is back"},
                       headers=ORIGIN, follow_redirects=True).get_data(as_text=True)
    assert "being checked again" in page
    assert services.batches.batches.get(batch_id).state is BatchState.CHECKING
    services.batches.work()
    status = client.get(f"/helpdesk/batches/{batch_id}/status").get_json()
    assert status["state"] == "ready" and status["counts"] == {"not_sent": 3, "skipped": 9}
    (event,) = services.store.search_audit(_query("batch.recheck"))
    assert event.reason == "Graph is back" and event.detail["rows"] >= 3


def test_a_large_batch_is_checked_a_chunk_per_worker_tick(client, services, monkeypatch):
    from app.services import batches as batch_module

    monkeypatch.setattr(batch_module, "CHECK_CHUNK", 4)
    staff_sign_in(client, DESK)
    batch_id = uploaded(client, services)  # 9 rows to check, 3 the file already spoiled
    services.batches.work()
    first = client.get(f"/helpdesk/batches/{batch_id}/status").get_json()
    assert first["state"] == "checking" and first["checked"] == 7 and first["percent"] == 58
    services.batches.work()
    services.batches.work()
    assert client.get(f"/helpdesk/batches/{batch_id}/status").get_json()["state"] == "ready"


def test_the_students_page_names_their_batches_with_each_invites_state(client, services, monkeypatch):
    from dataclasses import replace

    monkeypatch.setattr(services.invites, "settings", replace(services.invites.settings, mail_enabled=True,
                                                              public_url="https://portal.test"))
    staff_sign_in(client, DESK)
    sent = uploaded(client, services)
    services.batches.work()
    token = page_csrf(client, f"/helpdesk/batches/{sent}")
    client.post(f"/helpdesk/batches/{sent}/send", data={"csrf_token": token, "reason": "go"}, headers=ORIGIN)
    waiting = uploaded(client, services)  # uploaded, not sent: no invite yet
    page = client.get("/helpdesk/student/ada.lovelace@uni.test").get_data(as_text=True)
    table = page[page.index('id="student-batches"'):]
    table = table[:table.index("</table>")]
    assert table.index(f'data-batch="{waiting}"') < table.index(f'data-batch="{sent}"')  # newest first
    assert f'href="/helpdesk/batches/{sent}"' in table and f'href="/helpdesk/batches/{waiting}"' in table
    assert table.count('data-invite-state="sent"') == 1 and "None sent yet." in table
    # A student in no batch is told so; Barbara was a line of both (skipped: registered), so she has no invite.
    assert "The student is in no batch." in client.get("/helpdesk/student/donald.knuth@uni.test").get_data(as_text=True)
    other = client.get("/helpdesk/student/barbara.liskov@uni.test").get_data(as_text=True)
    assert other.count('data-invite-state=') == 0 and other.count("None sent yet.") == 2
