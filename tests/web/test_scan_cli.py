"""`proofup scan`: who will loop, for a group, an OU or a CSV list, with the real Graph client and the simulator."""
from __future__ import annotations

import csv
import io

import pytest

from app import cli
from app.adapters.store import InviteFilter
from app.services.scan import ROW_FIELDS
from tests.web.conftest import SEED, demo_settings
from tests.web.test_cli import run  # noqa: F401 (the fixture)

WILL_LOOP = {"ada.lovelace@uni.test", "alan.turing@uni.test", "edsger.dijkstra@uni.test"}
STUDENTS_OU = f"{SEED.users_ou},{SEED.base_dn}"


@pytest.fixture
def graph(simulated_graph):
    return simulated_graph  # the real Graph adapter against the simulated tenant (the demo's students)


@pytest.fixture
def settings(tmp_path):
    return demo_settings(tmp_path, smtp_host="127.0.0.1", smtp_port=2525, smtp_security="none", smtp_from="desk@uni.test")


def outcomes(table: str) -> dict[str, str]:
    """Read `upn -> outcome` from the printed table (the lines that start with a UPN)."""
    return {line.split()[0]: line.split()[1] for line in table.splitlines() if "@" in line.split(" ")[0]}


def test_a_group_scan_predicts_each_student_and_is_audited(run, services):
    code, out, _ = run("scan", "--group", SEED.required_group_dn)
    assert code == cli.OK
    found = outcomes(out)
    assert {u for u, o in found.items() if o == "will_loop"} == WILL_LOOP
    assert found["grace.hopper@uni.test"] == "will_register"
    assert found["barbara.liskov@uni.test"] == "already_registered"
    assert found["radia.perlman@uni.test"] == "skipped"  # in AD, not in Entra
    assert out.index("ada.lovelace@uni.test") < out.index("grace.hopper@uni.test")  # will loop listed first
    assert "Graph requests" in out
    event = services.store.audit_events(action="scan.run")[0]
    assert event.actor_kind == "cli" and event.detail["will_loop"] == 3
    assert event.detail["source"] == f"group:{SEED.required_group_dn}"


def test_an_ou_scan_covers_students_not_yet_required(run):
    code, out, _ = run("scan", "--ou", STUDENTS_OU)
    found = outcomes(out)
    assert code == cli.OK and found["margaret.hamilton@uni.test"] == "will_register"  # not in the group yet
    assert found["ken.thompson@uni.test"] == "skipped" and found["dennis.ritchie@uni.test"] == "skipped"


def test_a_csv_list_as_csv_output_is_formula_safe(run, tmp_path):
    listing = tmp_path / "intake.csv"
    listing.write_text("UPN;Name\nada.lovelace@uni.test;Ada\n=HYPERLINK(\"x\");Bad\nada.lovelace@uni.test;Again\n"
                       "grace.hopper@uni.test;Grace\n", encoding="utf-8-sig")
    code, out, err = run("scan", "--csv", str(listing), "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    assert code == cli.OK and rows[0] == list(ROW_FIELDS)
    assert [(r[0], r[1]) for r in rows[1:]] == [("ada.lovelace@uni.test", "will_loop"),
                                                  ("grace.hopper@uni.test", "will_register")]
    assert int(rows[1][4]) >= 1 and rows[1][6]  # Authenticator sign-ins and the device behind the prediction
    assert "skipped: line 3" in err and "skipped: line 4" in err and "2 students" in err


def test_invite_the_ones_who_will_loop(run, services):
    code, _, err = run("scan", "--group", SEED.required_group_dn, "--invite", "--reason", "intake 2026")
    assert code == cli.OK and "invited: 3" in err
    invited = {i.upn for i in services.invites.search(InviteFilter())}
    assert invited == WILL_LOOP
    assert services.store.audit_events(action="scan.invited")[0].reason == "intake 2026"


def test_invite_needs_a_reason(run, services):
    code, _, err = run("scan", "--group", SEED.required_group_dn, "--invite")
    assert code == cli.USAGE and "--reason" in err
    assert services.invites.search(InviteFilter()) == []


@pytest.mark.parametrize("argv", [["--group", "CN=Nope,OU=Groups,DC=uni,DC=test"], ["--group", "not a dn"],
                                  ["--ou", "OU=Nowhere,DC=uni,DC=test"], ["--group", STUDENTS_OU]])
def test_a_missing_or_wrong_source_scans_nothing(run, services, argv):
    code, out, err = run("scan", *argv)
    assert code == cli.REFUSED and "nothing scanned" in err and out == ""
    assert services.store.audit_events(action="scan.run") == []


def test_an_unreadable_list_scans_nothing(run, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name\nAda\n", encoding="utf-8")
    assert run("scan", "--csv", str(bad))[0] == cli.REFUSED
    assert run("scan", "--csv", str(tmp_path / "missing.csv"))[0] == cli.REFUSED


def test_graph_down_gives_unknown_and_its_own_exit_code(run, simulator):
    simulator.add_fault("/v1.0/$batch", "503", count=10)
    code, out, _ = run("scan", "--group", SEED.required_group_dn)
    assert code == cli.INCOMPLETE
    assert set(outcomes(out).values()) == {"unknown"}
