"""The demo's directory kept in a state file: every process that opens it sees one directory, and no write is lost."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.adapters.directory_embedded import EmbeddedDirectory
from app.seed import load_seed

ROOT = Path(__file__).resolve().parents[2]
SEED = load_seed()
ADA = "ada.lovelace@uni.test"


def test_a_change_in_one_process_is_seen_by_the_other(tmp_path):
    demo = EmbeddedDirectory(SEED, state_file=tmp_path / "directory.json")
    admin = EmbeddedDirectory.open(tmp_path / "directory.json")
    ada = admin.find_user(ADA)
    assert ada.in_group(SEED.required_group_dn) and not ada.in_group(SEED.bypass_group_dn)
    assert admin.verify_password(ADA, SEED.user(ADA).password)

    assert admin.add_member(SEED.bypass_group_dn, ada.dn) is True
    assert demo.find_user(ADA).in_group(SEED.bypass_group_dn)
    assert demo.add_member(SEED.bypass_group_dn, ada.dn) is False  # already there, as the other process made it
    assert demo.remove_member(SEED.bypass_group_dn, ada.dn) is True
    assert admin.list_members(SEED.bypass_group_dn) == []


def test_a_restarted_demo_starts_afresh_from_the_seed(tmp_path):
    state = tmp_path / "directory.json"
    first = EmbeddedDirectory(SEED, state_file=state)
    first.add_member(SEED.bypass_group_dn, first.find_user(ADA).dn)
    EmbeddedDirectory(SEED, state_file=state)
    assert EmbeddedDirectory.open(state).list_members(SEED.bypass_group_dn) == []


ADD_MANY = """
import sys
from app.adapters.directory_embedded import EmbeddedDirectory
directory = EmbeddedDirectory.open(sys.argv[1])
for n in range(int(sys.argv[3])):
    directory.add_member(sys.argv[2], f"CN=member-{sys.argv[4]}-{n},OU=Students,DC=uni,DC=test")
"""


def test_writers_in_several_processes_lose_nothing(tmp_path):
    state = tmp_path / "directory.json"
    EmbeddedDirectory(SEED, state_file=state)
    writers, each = 4, 30
    processes = [subprocess.Popen([sys.executable, "-c", ADD_MANY, str(state), SEED.bypass_group_dn, str(each),
                                   str(w)], cwd=ROOT) for w in range(writers)]
    assert [p.wait(timeout=60) for p in processes] == [0] * writers
    assert len(EmbeddedDirectory.open(state).list_members(SEED.bypass_group_dn)) == writers * each
