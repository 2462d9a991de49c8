"""A worker killed in the middle of a reminder pass: nothing is half-done, and the next pass sends each reminder once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from app.adapters.budget import UnlimitedBudget
from app.adapters.directory_embedded import EmbeddedDirectory
from app.adapters.store import Store
from app.domain.actors import Actor
from app.domain.batches import BatchState
from app.domain.grants import utc_now
from app.wiring import build_grants, build_services
from tests.web.conftest import SEED, demo_settings
from tests.web.fakes import FakeGraph, FakeIdentity

ROOT = Path(__file__).resolve().parents[2]
DESK = Actor.staff("hedy.lamarr@uni.test", role="helpdesk", reason="week 48")
CSV = b"upn\nada.lovelace@uni.test\nalan.turing@uni.test\ngrace.hopper@uni.test\n"


def portal(folder: Path):
    """Build the portal's services over the test's database (the same in the test and the crashing process)."""
    settings = demo_settings(folder, smtp_host="127.0.0.1", smtp_security="none", smtp_from="proofup@uni.test")
    directory = EmbeddedDirectory(SEED)
    store = Store(settings.database_url)
    store.upgrade()
    return build_services(settings, directory=directory, graph=FakeGraph(SEED), identity=FakeIdentity(), store=store,
                          grants=build_grants(settings, store, directory), budget=UnlimitedBudget())


def two_days_on():
    return utc_now() + timedelta(days=2, minutes=1)


def reminder_mails(services) -> int:
    with services.store.engine.connect() as db:
        return db.exec_driver_sql("SELECT count(*) FROM outbox WHERE kind = 'batch_reminder'").scalar_one()


def test_a_worker_killed_inside_a_reminder_pass_leaves_nothing_and_the_next_pass_sends_each_once(tmp_path):
    services = portal(tmp_path)
    desk = services.batches
    batch = desk.upload(DESK, CSV, file_name="w48.csv")
    desk.work()
    assert desk.batches.get(batch.id).state is BatchState.READY and desk.send(DESK, batch.id) == 3

    child = subprocess.run([sys.executable, "-m", "tests.services.batch_crasher", str(tmp_path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert reminder_mails(services) == 0  # the dead pass committed nothing: no mail, no new invite
    assert {line.reminders for line in desk.dashboard(batch.id).lines} == {0}

    desk.clock = two_days_on
    assert desk.remind_due() == 3
    assert desk.remind_due() == 0
    assert reminder_mails(services) == 3 and {line.reminders for line in desk.dashboard(batch.id).lines} == {1}
