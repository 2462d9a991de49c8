"""Backup and restore (docs/backup.md), for real: after the database comes back from an older backup, a bypass
membership added since then is not forgotten. The worker removes what the restored grants show the portal
added; a member no restored grant backs shows on the desk's "now" page and in /metrics (its alert is tested
with promtool), and the desk or `proofup remove-member` removes it with one audited action."""
from __future__ import annotations

import getpass
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import cli, create_app
from app.adapters.budget import UnlimitedBudget
from app.adapters.store import Store
from app.adapters.store.backup import BackupError, backup_sqlite
from app.domain.actors import Actor
from app.domain.upn import Upn
from app.wiring import build_grants, build_services, build_worker
from app.worker import run_worker
from tests.web.conftest import SEED, demo_settings
from tests.web.fakes import FakeIdentity
from tests.web.test_helpdesk import DESK, ORIGIN, page_csrf, staff_sign_in

ADA = "ada.lovelace@uni.test"  # unlocked after the backup, never before: no restored grant backs her
ALAN = "alan.turing@uni.test"  # unlocked before the backup (ended) and again after it
TOKEN = "metrics-token-0123456789"
ADMIN = Actor.cli("admin", reason="ticket 99")


class Portal:
    """The portal's services and a browser over one database, as a (re)started portal would have them."""

    def __init__(self, tmp_path, url: str, directory, graph, clock):
        self.settings = demo_settings(tmp_path, database_url=url, metrics_token=TOKEN,
                                      helpdesk_group_dn=SEED.helpdesk_group_dn)
        store = Store(url)
        store.upgrade()
        self.services = build_services(self.settings, directory=directory, graph=graph, identity=FakeIdentity(),
                                       store=store, grants=build_grants(self.settings, store, directory, clock),
                                       budget=UnlimitedBudget(), clock=clock)
        app = create_app(self.settings, services=self.services)
        app.config["TESTING"] = True
        self.client = app.test_client()

    def unlock(self, upn: str):
        _, grant = self.services.onboarding.unlock(Upn(upn), actor=ADMIN, minutes=30, client="cli")
        return grant

    def worker_cycle(self):
        sweeper, lease = build_worker(self.services)
        return run_worker(sweeper, lease, once=True)[0]

    def without_grant(self) -> float:
        response = self.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        values = {s.name: s.value for f in text_string_to_metric_families(response.get_data(as_text=True))
                  for s in f.samples}
        return values["proofup_bypass_members_without_grant"]

    def audit(self, action: str) -> list:
        return [e for e in self.services.store.audit_events(limit=500) if e.action == action]

    def stop(self) -> None:
        self.services.close()
        self.services.store.dispose()


@pytest.fixture
def portal_over(tmp_path, directory, graph, clock):
    started: list[Portal] = []

    def start(url: str) -> Portal:
        started.append(Portal(tmp_path, url, directory, graph, clock))
        return started[-1]

    yield start
    for portal in started:
        portal.stop()


def back_up(url: str, tmp_path: Path, request) -> Path:
    """Take the backup the way docs/backup.md says, while the portal runs."""
    if url.startswith("sqlite"):
        target = tmp_path / "backup.sqlite3"
        assert cli.main(["backup", str(target)]) == cli.OK  # `proofup backup`
        assert (target.stat().st_mode & 0o777) == 0o600  # the copy holds personal data
        return target
    server = request.getfixturevalue("postgres_server")
    target = tmp_path / "backup.dump"
    subprocess.run([str(server.bindir / "pg_dump"), "--format=custom", f"--file={target}",
                    f"--dbname={libpq(url)}"], check=True, capture_output=True, timeout=60)
    return target


def restore(url: str, backup: Path, request) -> None:
    """Put the backup back the way docs/backup.md says, with the portal and the worker stopped."""
    if url.startswith("sqlite"):
        live = Path(url.removeprefix("sqlite:///"))
        for path in (live, Path(f"{live}-wal"), Path(f"{live}-shm")):
            path.unlink(missing_ok=True)  # a stale -wal next to the copy would be replayed into it
        shutil.copyfile(backup, live)
        with sqlite3.connect(live) as db:  # sessions revoked since the backup must not come back
            db.execute("DELETE FROM portal_sessions")
        return
    server = request.getfixturevalue("postgres_server")
    subprocess.run([str(server.bindir / "pg_restore"), "--clean", "--if-exists", "--single-transaction",
                    f"--dbname={libpq(url)}", str(backup)], check=True, capture_output=True, timeout=60)
    subprocess.run([str(server.bindir / "psql"), f"--dbname={libpq(url)}", "--command=DELETE FROM portal_sessions"],
                   check=True, capture_output=True, timeout=60)


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_a_membership_added_after_the_backup_is_not_forgotten_after_a_restore(
        database_url, tmp_path, portal_over, directory, monkeypatch, request):
    before = portal_over(database_url)
    monkeypatch.setattr(cli, "load_settings", lambda: before.settings)  # `proofup backup` reads these
    before.unlock(ALAN)
    before.services.onboarding.cancel(Upn(ALAN), actor=ADMIN, client="cli")
    backup = back_up(database_url, tmp_path, request)
    ada_dn, alan_dn = before.unlock(ADA).user_dn, before.unlock(ALAN).user_dn  # both after the backup
    before.stop()

    restore(database_url, backup, request)
    after = portal_over(database_url)
    assert after.services.store.open_grants() == []  # the restored database knows neither grant
    assert directory.is_member(SEED.bypass_group_dn, ada_dn) and directory.is_member(SEED.bypass_group_dn, alan_dn)

    cycle = after.worker_cycle()
    # Alan's restored (ended) grant shows the portal added him: the worker removes him, audited.
    assert cycle.reconciled_removed == 1 and not directory.is_member(SEED.bypass_group_dn, alan_dn)
    assert [e.detail["member_dn"] for e in after.audit("reconcile.removed")] == [alan_dn]
    # Ada's membership no restored grant backs: left alone, but counted, listed and alerted on.
    assert cycle.foreign_members == (ada_dn,) and cycle.members_without_grant == 1
    assert directory.is_member(SEED.bypass_group_dn, ada_dn)
    assert after.without_grant() == 1

    staff_sign_in(after.client, DESK)
    assert ada_dn in after.client.get("/helpdesk/now").get_data(as_text=True)
    token = page_csrf(after.client, "/helpdesk/now")
    after.client.post("/helpdesk/members/remove", headers=ORIGIN,
                      data={"csrf_token": token, "dn": ada_dn, "reason": "restored from last night's backup"})
    assert not directory.is_member(SEED.bypass_group_dn, ada_dn)
    [removed] = after.audit("helpdesk.remove_member")
    assert (removed.actor, removed.reason, removed.outcome, removed.detail["member_dn"]) == (
        DESK, "restored from last night's backup", "ok", ada_dn)
    assert after.worker_cycle().members_without_grant == 0 and after.without_grant() == 0


@pytest.fixture
def run(portal_over, tmp_path, monkeypatch, capsys):
    """`proofup ...` against one portal's services."""
    portal = portal_over(f"sqlite:///{tmp_path / 'proofup.sqlite3'}")
    portal.services.close = lambda: None  # the fixture owns them
    monkeypatch.setattr(cli, "_services", lambda _settings: portal.services)
    monkeypatch.setattr(cli, "load_settings", lambda: portal.settings)

    def go(*argv: str):
        code = cli.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    go.portal = portal
    return go


def test_remove_member_removes_an_unbacked_member_with_one_audited_action(run, directory):
    by_hand = SEED.user_dn(SEED.user(ADA))
    directory.add_member(SEED.bypass_group_dn, by_hand)
    code, out, _ = run("remove-member", by_hand, "--reason", "ticket 100")
    assert code == cli.OK and "removed" in out and not directory.is_member(SEED.bypass_group_dn, by_hand)
    [removed] = run.portal.audit("cli.remove_member")
    assert (removed.actor_kind, removed.actor, removed.reason, removed.detail["member_dn"]) == (
        "cli", f"cli:{getpass.getuser()}", "ticket 100", by_hand)


def test_remove_member_refuses_a_non_member_and_a_granted_one_and_says_why(run, directory):
    granted = run.portal.unlock(ALAN)
    code, _, err = run("remove-member", granted.user_dn, "--reason", "ticket 101")
    assert code == cli.REFUSED and "proofup release" in err and directory.is_member(SEED.bypass_group_dn,
                                                                                     granted.user_dn)
    code, _, err = run("remove-member", "CN=Nobody,OU=Students,DC=uni,DC=test", "--reason", "ticket 102")
    assert code == cli.REFUSED and "not in the bypass group" in err
    refused = [e.detail["refusal"] for e in run.portal.audit("cli.remove_member") if e.outcome == "refused"]
    assert sorted(refused) == ["has_open_grant", "not_a_member"]


def test_remove_member_needs_a_reason(run, directory):
    by_hand = SEED.user_dn(SEED.user(ADA))
    directory.add_member(SEED.bypass_group_dn, by_hand)
    with pytest.raises(SystemExit):
        run("remove-member", by_hand)
    assert directory.is_member(SEED.bypass_group_dn, by_hand)


def test_backup_refuses_postgresql_a_missing_database_and_an_existing_target(tmp_path):
    with pytest.raises(BackupError, match="pg_dump"):
        backup_sqlite("postgresql+psycopg://proofup@/proofup", tmp_path / "b.sqlite3")
    with pytest.raises(BackupError, match="no SQLite database"):
        backup_sqlite(f"sqlite:///{tmp_path / 'missing.sqlite3'}", tmp_path / "b.sqlite3")
    live = tmp_path / "live.sqlite3"
    sqlite3.connect(live).close()
    (tmp_path / "taken.sqlite3").write_text("keep me")
    with pytest.raises(BackupError, match="exists already"):
        backup_sqlite(f"sqlite:///{live}", tmp_path / "taken.sqlite3")
    assert (tmp_path / "taken.sqlite3").read_text() == "keep me" and not os.path.exists(tmp_path / "b.sqlite3")


def test_backup_into_a_directory_names_the_copy_and_keep_needs_a_directory(run, tmp_path):
    backups = tmp_path / "backups"
    backups.mkdir()
    code, out, _ = run("backup", str(backups), "--keep", "14")
    [copy] = backups.iterdir()
    assert code == cli.OK and str(copy) in out and copy.name.startswith("proofup-")
    code, _, err = run("backup", str(tmp_path / "one.sqlite3"), "--keep", "3")
    assert code == cli.USAGE and "directory" in err and not (tmp_path / "one.sqlite3").exists()
