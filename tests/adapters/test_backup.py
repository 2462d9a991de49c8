"""`proofup backup` copies a SQLite database that is being written to: every copy is whole and one moment's."""
from __future__ import annotations

import json
import sqlite3
import threading
from datetime import timedelta

import pytest

from app.adapters.store.backup import BackupError, backup_into, backup_sqlite
from app.domain.actors import WORKER
from tests.support import upgraded_store


def test_copies_taken_while_the_portal_writes_are_whole_and_consistent(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'live.sqlite3'}"
    with upgraded_store(url, clock) as store:
        stop, written = threading.Event(), []

        def write_audit_events():
            while not stop.is_set():
                store.audit(WORKER, "backup.test", outcome="ok", n=len(written))
                written.append(1)

        writer = threading.Thread(target=write_audit_events)
        writer.start()
        try:
            copies = []
            for n in range(3):
                while len(written) < 50 * (n + 1):  # the portal goes on writing between the copies
                    stop.wait(0.01)
                before, path = len(written), tmp_path / f"copy{n}.sqlite3"
                copies.append((before, backup_sqlite(url, path), path))
        finally:
            stop.set()
            writer.join(10)
        after = len(written)
    counts = []
    for before, pages, path in copies:
        with sqlite3.connect(path) as copy:
            assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            assert copy.execute("PRAGMA page_count").fetchone()[0] == pages
            events = copy.execute("SELECT detail FROM audit_events WHERE action = 'backup.test'").fetchall()
        # One moment's copy: every event written before the backup began, then an unbroken run, no gaps.
        numbers = sorted(json.loads(detail)["n"] for (detail,) in events)
        assert numbers == list(range(len(numbers))) and before <= len(numbers) <= after
        counts.append(len(numbers))
    assert counts[0] < counts[1] < counts[2]


def test_a_directory_gets_named_copies_and_keep_deletes_only_the_oldest_of_them(tmp_path, clock):
    url = f"sqlite:///{tmp_path / 'live.sqlite3'}"
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "notes.txt").write_text("not a backup: never deleted")
    with upgraded_store(url, clock):
        made = [backup_into(url, backups, at=clock() + timedelta(hours=n), keep=2) for n in range(3)]
    assert sorted(p.name for p in backups.iterdir()) == sorted(["notes.txt", made[1].name, made[2].name])
    assert made[0].name.startswith("proofup-") and made[0].name.endswith(".sqlite3")
    with pytest.raises(BackupError, match="at least 1"):
        backup_into(url, backups, at=clock(), keep=0)
