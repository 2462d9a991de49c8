"""An admin runs `proofup diagnose`, `grant`, `release` and `worker --once` in a second terminal against the running demo."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.adapters.directory_embedded import EmbeddedDirectory
from app.adapters.store import Store
from app.config import read_env_file
from tests.fixtures.demo_process import DemoProcess
from tests.fixtures.simulator import https_session
from tests.simulator.browserless import Browserless

ROOT = Path(__file__).resolve().parents[2]
PROOFUP = [sys.executable, "-m", "app.cli"]
ADA = "ada.lovelace@uni.test"
GRACE = "grace.hopper@uni.test"
LOOP_NOTICE = "The selected authentication method is not available for"

pytestmark = pytest.mark.slow


@pytest.fixture
def demo(tmp_path):
    with DemoProcess(PROOFUP, tmp_path / "state", cwd=tmp_path, env=None) as running:
        yield running
    assert running.process.returncode == 0, running.output()  # SIGTERM stops it cleanly


def admin(demo: DemoProcess, command: str, *args: str) -> subprocess.CompletedProcess:
    """Run `proofup COMMAND --demo STATE_DIR ...` as its own process, as in a second terminal."""
    return subprocess.run([*PROOFUP, command, "--demo", str(demo.state_dir), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def my_sign_ins(demo: DemoProcess, upn: str) -> str:
    """Open the simulated My Sign-Ins as the student (AD FS asks for the password); return the page reached."""
    browser = Browserless(https_session(demo.ca_file), "http://never")
    page = browser.go(f"https://127.0.0.1:{demo.simulator_port}/security-info")
    page = browser.submit(page, {"login": upn})
    return browser.submit(page, {"UserName": upn, "Password": demo.seed.user(upn).password}).text


def test_the_admin_commands_act_on_the_running_demo(demo):
    state = demo.state_dir.resolve()
    assert f"proofup grant --demo {state} {ADA}" in demo.output()  # the banner says how
    settings = read_env_file(str(state / "demo.env"))
    directory = EmbeddedDirectory.open(settings["PROOFUP_DEMO_DIRECTORY"])
    bypass = settings["PROOFUP_BYPASS_GROUP_DN"]
    ada_dn = directory.find_user(ADA).dn

    diagnosed = admin(demo, "diagnose", ADA, "--json")
    assert diagnosed.returncode == 0, diagnosed.stderr
    found = json.loads(diagnosed.stdout)
    assert (found["state"], found["in_bypass_group"], found["devices"]) == ("stuck", False, ["Ada's iPhone"])
    assert LOOP_NOTICE in my_sign_ins(demo, ADA)

    granted = admin(demo, "grant", ADA, "--minutes", "10", "--reason", "ticket 4711")
    assert granted.returncode == 0 and "granted" in granted.stdout, granted.stderr
    assert directory.is_member(bypass, ada_dn)
    # The demo's simulated AD FS reads the same directory: My Sign-Ins opens now; so does the portal.
    assert 'id="signedInAs"' in my_sign_ins(demo, ADA)
    _, page = demo.sign_in(ADA)
    assert 'data-state="unlocked"' in page

    # A member added by hand (the simulator's control endpoint, as in ADUC): the admin's worker run reports it.
    control = https_session(demo.ca_file)
    token = (state / "simulator" / "control-token").read_text(encoding="utf-8").strip()
    control.post(f"https://127.0.0.1:{demo.simulator_port}/_simulator/membership", timeout=10,
                 json={"upn": GRACE, "group": "bypass", "member": True},
                 headers={"Authorization": f"Bearer {token}"}).raise_for_status()
    worked = admin(demo, "worker", "--once")
    assert worked.returncode == 0, worked.stderr
    assert "one cycle run" in worked.stdout and "foreign=1" in worked.stdout
    assert directory.find_user(GRACE).dn in worked.stdout and directory.is_member(bypass, ada_dn)

    released = admin(demo, "release", ADA, "--reason", "registered on the phone")
    assert released.returncode == 0 and "released" in released.stdout, released.stderr
    assert not directory.is_member(bypass, ada_dn)
    assert LOOP_NOTICE in my_sign_ins(demo, ADA)  # out of the group: the loop is back

    store = Store(settings["PROOFUP_DATABASE_URL"])
    try:
        by_admin = [e for e in store.audit_events(upn=ADA) if e.actor.startswith("cli:")]
    finally:
        store.dispose()
    actions = {e.action for e in by_admin}
    assert {"grant.intent", "grant.active"} <= actions and actions & {"grant.released", "grant.cancelled"}


def test_a_scan_against_the_running_demo_invites_who_will_loop_into_its_mailbox(demo):
    scanned = admin(demo, "scan", "--group", demo.seed.required_group_dn, "--format", "csv", "--invite",
                    "--reason", "intake 2026")
    assert scanned.returncode == 0, scanned.stderr
    outcomes = {line.split(",")[0]: line.split(",")[1] for line in scanned.stdout.splitlines()[1:]}
    assert {u for u, o in outcomes.items() if o == "will_loop"} == {ADA, "alan.turing@uni.test",
                                                                      "edsger.dijkstra@uni.test"}
    assert outcomes[GRACE] == "will_register" and "invited: 3" in scanned.stderr


def test_the_demo_offers_the_one_time_pass_with_remedy_both(tmp_path):
    """Start `proofup demo --remedy both`: a stuck student is offered the pass first, and the admin commands see it."""
    with DemoProcess(PROOFUP, tmp_path / "state", cwd=tmp_path, env=None, options=("--remedy", "both")) as running:
        assert read_env_file(str(running.state_dir / "demo.env"))["PROOFUP_REMEDY"] == "both"
        _, page = running.sign_in(ADA)
        assert 'id="get-tap"' in page and 'id="unlock"' in page
    assert running.process.returncode == 0, running.output()
